//! The lab end to end, on real machines: `lab up` with 3 systemd-nspawn nodes, SSH with the
//! pinned host keys, sudo, cgroups and CAP_NET_ADMIN inside a node, idempotent `up`,
//! `--control-planes` (endpoint, roles, keepalived/haproxy installed but stopped), one lab
//! per machine, `lab stop`/`start`, and `lab down` leaving no residue.
//!
//! Needs root (skipped otherwise). Uses a temp state dir but the shared cache dir, so the
//! base root filesystem is built once (about a minute) and then reused. One test function:
//! the lab's bridge and namespace names are fixed, so only one lab can exist at a time.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_director-boot");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn lab(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", state)
        .arg("lab")
        .args(args)
        .output()
        .expect("run director-boot");
    eprintln!(
        "$ director-boot lab {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lab_ok(state: &Path, args: &[&str]) -> String {
    let out = lab(state, args);
    assert!(out.status.success(), "lab {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `lab down` even when an assertion failed half-way, so no lab is left behind.
struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .env("DIRECTOR_BOOT_STATE_DIR", &self.0)
            .args(["lab", "down"])
            .output();
    }
}

fn ssh(lab_dir: &Path, user_host: &str, command: &str) -> Output {
    common::require_lab_bridge();
    Command::new("ssh")
        .arg("-i")
        .arg(lab_dir.join("id_ed25519"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab_dir.join("known_hosts").display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            user_host,
            command,
        ])
        .output()
        .expect("run ssh")
}

fn ssh_ok(lab_dir: &Path, user_host: &str, command: &str) -> String {
    let out = ssh(lab_dir, user_host, command);
    assert!(
        out.status.success(),
        "ssh {user_host} {command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sshd_answers(addr: &str) -> bool {
    use std::io::Read;
    common::require_lab_bridge();
    let Ok(sock) = addr.parse() else { return false };
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_secs(3)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = [0u8; 8];
    matches!(s.read(&mut buf), Ok(n) if n >= 4 && buf.starts_with(b"SSH-"))
}

fn status(state: &Path) -> Vec<serde_json::Value> {
    let out = lab_ok(state, &["status", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("status --json")
}

fn node_state(nodes: &[serde_json::Value], name: &str) -> String {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// (pid, start time) of every node recorded in the lab state file.
fn recorded_pids(lab_dir: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(lab_dir.join("state.json")).expect("state.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("state json");
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| Some((n["pid"].as_u64()?, n["start_time"].as_u64()?)))
        .collect()
}

/// The process is alive (not a zombie) and still the one with that start time.
fn alive(pid: u64, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    f.first().is_some_and(|s| *s != "Z") && f.get(19).and_then(|s| s.parse().ok()) == Some(start)
}

fn links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lab_end_to_end() {
    if !is_root() {
        eprintln!("SKIPPED lab_end_to_end: the lab needs root (netns, mounts, cgroups)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let lab_dir = state.join("lab");
    let _guard = DownOnDrop(state.clone());

    // Up with 3 nodes.
    let t0 = Instant::now();
    let out = lab_ok(&state, &["up", "--nodes", "3"]);
    eprintln!("lab up --nodes 3: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(out.contains("inventory.yaml"), "{out}");
    let inventory = std::fs::read_to_string(lab_dir.join("inventory.yaml")).expect("inventory");
    assert!(inventory.contains("10.213.0.13"), "{inventory}");
    for i in 11..=13 {
        let addr = format!("10.213.0.{i}:22");
        assert!(sshd_answers(&addr), "sshd of {addr} does not answer");
    }

    // OpenSSH verifies the pinned host key; every node has its own key and machine-id.
    assert_eq!(ssh_ok(&lab_dir, "root@10.213.0.11", "hostname"), "node1");
    let known = std::fs::read_to_string(lab_dir.join("known_hosts")).expect("known_hosts");
    let mut host_keys: Vec<&str> = known
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    host_keys.dedup();
    assert_eq!(host_keys.len(), 3, "{known}");
    let mut ids: Vec<String> = (11..=13)
        .map(|i| {
            ssh_ok(
                &lab_dir,
                &format!("root@10.213.0.{i}"),
                "cat /etc/machine-id",
            )
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "machine-ids are not unique");

    // Non-root user with passwordless sudo.
    assert_eq!(ssh_ok(&lab_dir, "ops@10.213.0.12", "whoami"), "ops");
    ssh_ok(&lab_dir, "ops@10.213.0.12", "sudo -n true");

    // What kubelet, containerd and a CNI need inside a node.
    ssh_ok(
        &lab_dir,
        "root@10.213.0.13",
        "mkdir /sys/fs/cgroup/memory/x && rmdir /sys/fs/cgroup/memory/x",
    );
    ssh_ok(
        &lab_dir,
        "root@10.213.0.12",
        "ip link add v0 type vxlan id 5 dstport 4789 dev eth0 && ip link del v0",
    );
    let prep = ssh_ok(
        &lab_dir,
        "root@10.213.0.11",
        "test -c /dev/kmsg && cat /proc/sys/vm/overcommit_memory && ip route show default",
    );
    assert!(prep.starts_with('1'), "{prep}");
    assert!(prep.contains("default via 10.213.0.254"), "{prep}");

    // A second `up` is a no-op: nothing restarted.
    let before: Vec<_> = status(&state).iter().map(|n| n["pid"].clone()).collect();
    let out = lab(&state, &["up", "--nodes", "3"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(0 started)"));
    let after: Vec<_> = status(&state).iter().map(|n| n["pid"].clone()).collect();
    assert_eq!(before, after);

    // Growing adds a node (with its own pinned key) and leaves the others alone.
    let out = lab(&state, &["up", "--nodes", "4"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(1 started)"));
    assert_eq!(ssh_ok(&lab_dir, "root@10.213.0.14", "hostname"), "node4");
    let known = std::fs::read_to_string(lab_dir.join("known_hosts")).expect("known_hosts");
    assert_eq!(known.lines().count(), 4, "{known}");
    let grown: Vec<_> = status(&state).iter().map(|n| n["pid"].clone()).collect();
    assert_eq!(&grown[..3], &before[..]);

    // Several control planes: the inventory is rewritten with the endpoint, nothing boots.
    let out = lab(&state, &["up", "--nodes", "4", "--control-planes", "2"]);
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("2 etcd members need 2 for quorum and so tolerate no failure"),
        "{msg}"
    );
    let out = lab(&state, &["up", "--nodes", "4", "--control-planes", "3"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(0 started)"));
    let inventory = std::fs::read_to_string(lab_dir.join("inventory.yaml")).expect("inventory");
    assert!(
        inventory.contains("control_plane_endpoint: 10.213.0.10"),
        "{inventory}"
    );
    let validated = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", &state)
        .arg("validate")
        .arg(lab_dir.join("inventory.yaml"))
        .output()
        .expect("run validate");
    let text = String::from_utf8_lossy(&validated.stdout);
    assert!(
        validated.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    assert!(
        text.contains("https://10.213.0.10:6443 (virtual IP)"),
        "{text}"
    );
    let table = lab_ok(&state, &["status"]);
    assert!(
        table.contains("control-plane endpoint: 10.213.0.10:6443"),
        "{table}"
    );
    let roles: Vec<String> = status(&state)
        .iter()
        .map(|n| {
            n["roles"]
                .as_array()
                .map(|r| r.len())
                .unwrap_or(0)
                .to_string()
        })
        .collect();
    assert_eq!(roles, ["2", "2", "2", "1"]);

    // The HA host packages are in the base, installed but not running until init.
    let ha = ssh_ok(
        &lab_dir,
        "root@10.213.0.11",
        "keepalived --version 2>&1 | head -1; haproxy -v | head -1; \
         systemctl is-enabled keepalived haproxy; systemctl is-active keepalived haproxy; true",
    );
    assert!(ha.contains("Keepalived v"), "{ha}");
    assert!(ha.contains("HAProxy version"), "{ha}");
    assert!(!ha.contains("enabled") && !ha.contains("\nactive"), "{ha}");

    // Only one lab per machine: another state dir is refused, clearly.
    let other = lab(&tmp.path().join("other"), &["up", "--nodes", "1"]);
    assert!(!other.status.success());
    let msg = String::from_utf8_lossy(&other.stderr);
    assert!(msg.contains("belongs to another lab"), "{msg}");

    // Stop and start one node.
    let pids_seen = recorded_pids(&lab_dir);
    lab_ok(&state, &["stop", "node3"]);
    let nodes = status(&state);
    assert_eq!(node_state(&nodes, "node3"), "stopped");
    assert_eq!(node_state(&nodes, "node1"), "running");
    assert!(!sshd_answers("10.213.0.13:22"));
    lab_ok(&state, &["start", "node3"]);
    assert_eq!(node_state(&status(&state), "node3"), "running");
    assert_eq!(ssh_ok(&lab_dir, "root@10.213.0.13", "hostname"), "node3");
    let mut pids = pids_seen;
    pids.extend(recorded_pids(&lab_dir));

    // Down, then nothing of the lab may be left.
    let t0 = Instant::now();
    lab_ok(&state, &["down"]);
    eprintln!("lab down: {:.1} s", t0.elapsed().as_secs_f64());
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("dblab-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(netns.is_empty(), "netns left: {netns:?}");
    let left: Vec<String> = links()
        .into_iter()
        .filter(|l| l == "dblab0" || l.starts_with("dblab-"))
        .collect();
    assert!(left.is_empty(), "links left: {left:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let lab_s = lab_dir.display().to_string();
    let mounts: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&lab_s)).collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    // A stopped nspawn may be a zombie for a moment until PID 1 reaps it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|(p, s)| alive(*p, *s)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let living: Vec<_> = pids.iter().filter(|(p, s)| alive(*p, *s)).collect();
    assert!(living.is_empty(), "lab processes alive: {living:?}");
    let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .flat_map(|h| {
                    std::fs::read_dir(h.path().join("lab"))
                        .map(|l| l.flatten().map(|e| e.path()).collect::<Vec<_>>())
                        .unwrap_or_default()
                })
                .filter(|p| p.to_string_lossy().contains("dblab-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    assert!(!lab_dir.join("nodes").exists());

    // Down again: a no-op that says so.
    let again = lab_ok(&state, &["down"]);
    assert!(again.contains("nothing to do"), "{again}");
}
