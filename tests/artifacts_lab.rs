//! Issue 13's artifacts acceptance, for real: the lab mirror (scripts/build-mirror.sh, static
//! binaries) exported in the upstream layout and served by a loopback web server
//! (`python3 -m http.server --bind 127.0.0.1`); a served file corrupted → fetch fails naming it
//! and both sha256 and keeps nothing under its name; fetched with the lab's pinned manifest into
//! a new mirror, verified, and a 3-node lab built from it has 3 Ready nodes; then the same from
//! a bundle file (`init --artifacts FILE`) on a fresh lab.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

/// The loopback web server, stopped by its PID on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Server(child), format!("http://127.0.0.1:{port}/"))
}

fn ready_nodes(c: &Cluster) {
    c.wait_for(
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
        ],
        180,
        |t| ["node1=True", "node2=True", "node3=True"].iter().all(|n| t.contains(n)),
    );
}

#[test]
fn export_serve_fetch_verify_init_and_bundle() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let lab_mirror = mirror_dir();
    let lab_manifest = lab_mirror.join("pinned.yaml");
    assert!(
        lab_manifest.exists(),
        "no {}: run scripts/build-mirror.sh first",
        lab_manifest.display()
    );
    let work = tempfile::tempdir().expect("temp dir");
    let state = work.path().join("state");
    let lab_mirror_s = lab_mirror.to_string_lossy().into_owned();
    let manifest_s = lab_manifest.to_string_lossy().into_owned();

    // export, served on loopback
    let export = work.path().join("export");
    let out = db(
        &state,
        &[
            "artifacts",
            "export",
            &export.to_string_lossy(),
            "--artifacts",
            &lab_mirror_s,
        ],
    );
    assert!(out.status.success(), "export: {}", stderr(&out));
    let (_server, url) = serve(&export);

    // A corrupted served file: fetch fails naming it and both sha256; nothing under its name.
    let pinned: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&lab_manifest).unwrap()).unwrap();
    let runc = pinned["components"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "runc")
        .expect("runc in the lab manifest");
    let runc_rel = runc["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .to_string();
    let runc_sha = runc["sha256"]["amd64"].as_str().unwrap().to_string();
    let served = export.join(&runc_rel);
    let aside = export.join("runc.orig");
    std::fs::rename(&served, &aside).unwrap();
    let mut bytes = std::fs::read(&aside).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&served, &bytes).unwrap();
    let bad_sha = director_boot::engine::artifacts::sha256_file(&served).unwrap();
    let bad = work.path().join("bad-mirror");
    let out = db(
        &state,
        &[
            "artifacts",
            "fetch",
            "--from",
            &url,
            "--manifest",
            &manifest_s,
            "--artifacts",
            &bad.to_string_lossy(),
        ],
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(&runc_rel), "{err}");
    assert!(err.contains(&runc_sha) && err.contains(&bad_sha), "{err}");
    assert!(!bad.join("upstream").join(&runc_rel).exists());
    assert!(!bad.join("bin/runc").exists() && !bad.join("manifest.json").exists());
    std::fs::remove_file(&served).unwrap();
    std::fs::rename(&aside, &served).unwrap();

    // fetch into a new mirror with the lab's pinned manifest; verify; re-run fetches nothing
    let fetched = work.path().join("fetched");
    let fetched_s = fetched.to_string_lossy().into_owned();
    let t = Instant::now();
    let out = db(
        &state,
        &[
            "artifacts",
            "fetch",
            "--from",
            &url,
            "--manifest",
            &manifest_s,
            "--artifacts",
            &fetched_s,
        ],
    );
    assert!(out.status.success(), "fetch: {}", stderr(&out));
    eprintln!("fetch from loopback: {:.1}s", t.elapsed().as_secs_f64());
    let out = db(&state, &["artifacts", "verify", "--artifacts", &fetched_s]);
    assert!(out.status.success(), "verify: {}", stdout(&out));
    let out = db(
        &state,
        &[
            "--json",
            "artifacts",
            "fetch",
            "--from",
            &url,
            "--manifest",
            &manifest_s,
            "--artifacts",
            &fetched_s,
        ],
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fetch --json");
    assert_eq!(
        again["downloaded"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );

    // bundle (before the lab: it needs only the mirror)
    let bundle = work.path().join("site.tar.zst");
    let out = db(
        &state,
        &[
            "artifacts",
            "bundle",
            &bundle.to_string_lossy(),
            "--artifacts",
            &fetched_s,
        ],
    );
    assert!(out.status.success(), "bundle: {}", stderr(&out));

    // a 3-node lab from the fetched mirror
    {
        let c = Cluster {
            lab: Lab::up(3),
            mirror: fetched.clone(),
        };
        let (out, report) = c.init(&[]);
        assert!(out.status.success(), "init: {report}\n{}", stderr(&out));
        ready_nodes(&c);
        let v = c.lab.ssh(
            "10.213.0.12",
            "/usr/local/bin/containerd --version; /usr/local/bin/runc --version | head -1; /usr/local/bin/etcd --version 2>/dev/null | head -1",
        );
        eprintln!("node2 versions:\n{}", stdout(&v));
        // containerd 2.x reads the version-2 config by migrating it: show what it says
        let log = c.lab.ssh(
            "10.213.0.12",
            "journalctl -u containerd --no-pager -o cat | grep -iE 'level=(warning|error)|deprecat|migrat' | sort | uniq -c | sort -rn | head -20",
        );
        eprintln!("node2 containerd warnings:\n{}", stdout(&log));
    } // lab down

    // the same from the bundle file, on a fresh lab; its unpacked copy goes to a cache dir of
    // this test, not the user's cache
    let c = Cluster {
        lab: Lab::up(3),
        mirror: fetched.clone(),
    };
    let b = bundle.to_string_lossy().into_owned();
    let cache = work.path().join("cache");
    let cache_s = cache.to_string_lossy().into_owned();
    let out = c.lab.with_inventory(
        &["--cache-dir", &cache_s, "--json", "init"],
        &["--artifacts", &b],
    );
    assert!(
        out.status.success(),
        "init --artifacts FILE: {}",
        stderr(&out)
    );
    assert!(
        cache.join("bundles").exists(),
        "the bundle was unpacked into --cache-dir"
    );
    ready_nodes(&c);

    // The inventory names the web server (`artifacts.url`): init with no --artifacts fetches
    // what its cache's mirror lacks (all of it: a fresh cache dir), then converges the same
    // cluster; a re-run fetches nothing.
    let inv = c.lab.dir().join("inventory-with-artifacts.yaml");
    let text = std::fs::read_to_string(&c.lab.inventory).unwrap();
    std::fs::write(
        &inv,
        format!("{text}\nartifacts:\n  url: {url}\n  manifest: {manifest_s}\n"),
    )
    .unwrap();
    let inv_s = inv.to_string_lossy().into_owned();
    let cache2 = work.path().join("cache2");
    let cache2_s = cache2.to_string_lossy().into_owned();
    let t = Instant::now();
    let out = c
        .lab
        .run(&["--cache-dir", &cache2_s, "--json", "init", &inv_s]);
    assert!(
        out.status.success(),
        "init with artifacts.url: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("file(s) fetched from"),
        "init said what it fetched: {}",
        stderr(&out)
    );
    eprintln!(
        "init fetching from artifacts.url: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let cache2_mirror = cache2.join("mirror").to_string_lossy().into_owned();
    let out = db(
        &state,
        &["artifacts", "verify", "--artifacts", &cache2_mirror],
    );
    assert!(out.status.success(), "verify: {}", stdout(&out));
    let out = c
        .lab
        .run(&["--cache-dir", &cache2_s, "--json", "init", &inv_s]);
    assert!(out.status.success(), "re-run: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("fetched from"),
        "a re-run fetches nothing: {}",
        stderr(&out)
    );
    ready_nodes(&c);
}
