//! `director-boot images load` end to end on this machine: a real OpenSSH sshd on 127.0.0.1
//! as the "node", a private containerd (own root, state and socket; CRI off) as its runtime,
//! and a small OCI image built here. Every process is stopped by its PID; what the load puts
//! outside temp dirs (/var/lib/director-boot) is removed.
//! Needs root, sshd, containerd and ctr (scripts/install-deps.sh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_director-boot");

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI image layout (one uncompressed layer holding /hello) tarred the way
/// scripts/lib/oci.sh tars umoci's layouts.
fn oci_archive(reference: &str) -> (Vec<u8>, String) {
    let layer = tar_of(&[("hello", b"hello from director-boot\n")]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&layer))]},
    })
    .to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha(config.as_bytes())), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha(&layer)), "size": layer.len()}],
    })
    .to_string();
    let digest = format!("sha256:{}", sha(manifest.as_bytes()));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": reference}}],
    })
    .to_string();
    let blob = |d: &[u8]| format!("blobs/sha256/{}", sha(d));
    let bytes = tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", index.as_bytes()),
        (&blob(&layer), &layer),
        (&blob(config.as_bytes()), config.as_bytes()),
        (&blob(manifest.as_bytes()), manifest.as_bytes()),
    ]);
    (bytes, digest)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_sshd(dir: &Path) -> (Killed, u16) {
    let keygen = |path: &Path| {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen");
    };
    keygen(&dir.join("host_key"));
    keygen(&dir.join("id"));
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPidFile none\n\
             PermitRootLogin yes\nPasswordAuthentication no\nMaxSessions 10\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
        .spawn()
        .expect("start sshd");
    let sshd = Killed(child);
    wait_for("sshd", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (sshd, port)
}

fn start_containerd(dir: &Path) -> (Killed, PathBuf) {
    let sock = dir.join("sock");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{s}\"\n",
            d = dir.display(),
            s = sock.display()
        ),
    )
    .unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
        .spawn()
        .expect("start containerd (apt-get install containerd)");
    let ctrd = Killed(child);
    wait_for("containerd", || sock.exists());
    (ctrd, sock)
}

fn load(state: &Path, inventory: &Path, archive: &Path, sock: &Path, json: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--state-dir")
        .arg(state)
        .args(["images", "load"])
        .arg(inventory)
        .arg(archive)
        .arg("--containerd-address")
        .arg(sock)
        .arg("--accept-new-host-keys");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "--- images load:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn images_load_against_a_local_sshd_and_containerd() {
    if !is_root() {
        eprintln!("skipped: needs root (sshd, containerd)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for d in ["sshd", "containerd", "state"] {
        std::fs::create_dir(dir.join(d)).unwrap();
    }
    let (_sshd, port) = start_sshd(&dir.join("sshd"));
    let (ctrd, sock) = start_containerd(&dir.join("containerd"));

    let reference = format!("localhost/director-boot-test/hello:{}", std::process::id());
    let (bytes, digest) = oci_archive(&reference);
    let name = format!("director-boot-test-{}.tar", std::process::id());
    let archive = dir.join(&name);
    std::fs::write(&archive, &bytes).unwrap();
    let staged = PathBuf::from("/var/lib/director-boot/images/loaded").join(&name);
    // The "node" is this machine: its staged archive goes, and so does the state dir when
    // this test created it.
    struct Cleanup(PathBuf, Option<&'static str>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            if let Some(dir) = self.1 {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    let state_dir = "/var/lib/director-boot";
    let _cleanup = Cleanup(
        staged.clone(),
        (!Path::new(state_dir).exists()).then_some(state_dir),
    );

    let inventory = dir.join("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "cluster:\n  name: images-load-test\ndefaults:\n  user: root\n  identity_file: {}\n\
             hosts:\n  - name: node1\n    address: 127.0.0.1\n    port: {port}\n    roles: [etcd, control-plane, worker]\n",
            dir.join("sshd/id").display()
        ),
    )
    .unwrap();
    let state = dir.join("state");

    // First run: uploaded, staged, imported; containerd lists it with the archive's digest.
    let out = load(&state, &inventory, &archive, &sock, false);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("node1: imported {reference}")),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&staged).unwrap(), bytes);
    let ls = Command::new("ctr")
        .arg("--address")
        .arg(&sock)
        .args(["-n", "k8s.io", "images", "ls"])
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&reference) && l.contains(&digest)),
        "{ls}"
    );

    // Second run: nothing to do.
    let out = load(&state, &inventory, &archive, &sock, true);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["archives"][0]["images"][0]["reference"],
        reference.as_str()
    );
    assert_eq!(v["hosts"][0]["images"][0]["state"], "present");
    assert_eq!(v["hosts"][0]["images"][0]["uploaded"], false);

    // No containerd: the host fails in inspect with what to do, before any upload.
    drop(ctrd);
    let out = load(&state, &inventory, &archive, &sock, true);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"][0]["phase"], "inspect");
    let error = v["hosts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("containerd is not running on node1"), "{v}");
    let hint = v["hosts"][0]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("director-boot init"), "{v}");
}
