//! Shared by the lab tests: run the real binary against a lab in a temp state dir, tear the
//! lab down even when an assertion fails, and reach nodes with the OpenSSH client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_director-boot");

/// `scripts/test.sh --long`: the long scenarios CI leaves out.
pub fn long_tests() -> bool {
    std::env::var_os("DIRECTOR_BOOT_LONG_TESTS").is_some_and(|v| v == "1")
}

/// The lab slot of this test run (`DIRECTOR_BOOT_LAB_SLOT`, default 0): slot N is an
/// independent lab with bridge `dblabN` and addresses 10.213.N.0/24, so labs can run side by
/// side. Tests written with the helpers below run in any slot; older ones assume slot 0.
pub fn lab_slot() -> u8 {
    std::env::var("DIRECTOR_BOOT_LAB_SLOT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The lab's dir inside a state dir: `lab`, or `labN` in slot N.
pub fn lab_dir_name() -> String {
    match lab_slot() {
        0 => "lab".into(),
        n => format!("lab{n}"),
    }
}

/// The lab's bridge.
pub fn lab_bridge() -> String {
    format!("dblab{}", lab_slot())
}

/// The lab address with last octet `last` (node I is `10 + I`, the HA endpoint 10).
pub fn lab_ip(last: u8) -> String {
    format!("10.213.{}.{last}", lab_slot())
}

/// The address of lab node `index` (node1 is .11).
pub fn node_addr(index: u8) -> String {
    lab_ip(10 + index)
}

/// Why lab addresses would not stay on this machine right now, or `None` when they would: the
/// bridge must exist and be up, and a lab address must route through it. When the lab is down,
/// the host routes 10.213.N.0/24 to its default gateway, so anything aimed at a lab address
/// would leave the machine (../shared/lab-notes.md).
pub fn lab_bridge_problem() -> Option<String> {
    let bridge = lab_bridge();
    let probe = node_addr(1);
    let link = Command::new("ip")
        .args(["-o", "link", "show", &bridge])
        .output();
    let link = match link {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(_) => return Some(format!("the lab bridge {bridge} does not exist")),
        Err(e) => return Some(format!("cannot run ip: {e}")),
    };
    let flags = link.split(['<', '>']).nth(1).unwrap_or("");
    if !flags.split(',').any(|f| f == "UP") {
        return Some(format!(
            "the lab bridge {bridge} is not up: {}",
            link.trim()
        ));
    }
    let route = Command::new("ip")
        .args(["route", "get", &probe])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !route.contains(&format!("dev {bridge}")) || route.contains(" via ") {
        return Some(format!(
            "{probe} does not route through {bridge}: {}",
            route.trim()
        ));
    }
    None
}

pub fn lab_bridge_up() -> bool {
    lab_bridge_problem().is_none()
}

/// Stop the test before it contacts a lab address that would leave this machine.
pub fn require_lab_bridge() {
    if let Some(why) = lab_bridge_problem() {
        panic!("not contacting the lab: {why}");
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A lab of `nodes` machines in a fresh state dir; `lab down` on drop.
pub struct Lab {
    pub state: tempfile::TempDir,
    pub inventory: PathBuf,
}

impl Lab {
    pub fn up(nodes: u32) -> Lab {
        Lab::up_with(&["--nodes", &nodes.to_string()])
    }

    /// `lab up` with these arguments (`--nodes 5 --control-planes 3`).
    pub fn up_with(args: &[&str]) -> Lab {
        let state = tempfile::tempdir().expect("temp state dir");
        let mut all = vec!["lab", "up"];
        all.extend_from_slice(args);
        let out = db(state.path(), &all);
        let inventory = state.path().join(lab_dir_name()).join("inventory.yaml");
        // The guard first: a failed check below still takes down whatever did come up.
        let lab = Lab { state, inventory };
        assert!(out.status.success(), "lab up failed");
        assert!(
            lab.inventory.exists(),
            "lab up wrote no inventory at {}",
            lab.inventory.display()
        );
        lab
    }

    pub fn dir(&self) -> PathBuf {
        self.state.path().join(lab_dir_name())
    }

    /// Run director-boot; anything but a `lab` subcommand may contact lab addresses, so the
    /// bridge must be up for it.
    pub fn run(&self, args: &[&str]) -> Output {
        if args.first() != Some(&"lab") {
            require_lab_bridge();
        }
        db(self.state.path(), args)
    }

    /// Run with the inventory inserted after the subcommand words.
    pub fn with_inventory(&self, words: &[&str], rest: &[&str]) -> Output {
        require_lab_bridge();
        let inv = self.inventory.to_string_lossy().into_owned();
        let mut args: Vec<&str> = words.to_vec();
        args.push(&inv);
        args.extend_from_slice(rest);
        db(self.state.path(), &args)
    }

    pub fn ssh(&self, node_addr: &str, command: &str) -> Output {
        ssh(&self.dir(), &format!("root@{node_addr}"), command)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .env("DIRECTOR_BOOT_STATE_DIR", self.state.path())
            .args(["lab", "down"])
            .output();
    }
}

pub fn db(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", state)
        .args(args)
        .output()
        .expect("run director-boot");
    eprintln!(
        "$ director-boot {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ssh(lab_dir: &Path, user_host: &str, command: &str) -> Output {
    require_lab_bridge();
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
        ])
        .arg(user_host)
        .arg(command)
        .output()
        .expect("run ssh")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("DIRECTOR_BOOT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/director-boot")
        })
}

/// The artifact mirror the lab tests use: $DIRECTOR_BOOT_MIRROR_DIR (as scripts/build-mirror.sh
/// and verify-mirror.sh), else <cache>/mirror.
pub fn mirror_dir() -> PathBuf {
    std::env::var_os("DIRECTOR_BOOT_MIRROR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("mirror"))
}

/// The artifact mirror the lab tests init from (scripts/build-mirror.sh builds it).
pub fn lab_mirror() -> PathBuf {
    let mirror = mirror_dir();
    assert!(
        mirror.join("manifest.json").exists(),
        "no artifact mirror at {}: run scripts/build-mirror.sh first",
        mirror.display()
    );
    mirror
}

/// An image's reference in the mirror's manifest (`busybox`, `pause`).
pub fn image_ref(mirror: &Path, name: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(mirror.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    manifest["artifacts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["kind"] == "image" && x["name"] == name))
        .and_then(|x| x["ref"].as_str())
        .unwrap_or_else(|| panic!("no {name} image in the mirror"))
        .to_string()
}

pub struct Cluster {
    pub lab: Lab,
    pub mirror: PathBuf,
}

impl Cluster {
    pub fn kubectl(&self, args: &[&str]) -> Output {
        require_lab_bridge();
        let admin = self.lab.state.path().join("clusters/lab/admin.conf");
        let out = Command::new(self.mirror.join("bin/kubectl"))
            .arg("--kubeconfig")
            .arg(&admin)
            .args(args)
            .output()
            .expect("run kubectl");
        eprintln!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            stdout(&out),
            stderr(&out)
        );
        out
    }

    pub fn init(&self, extra: &[&str]) -> (Output, serde_json::Value) {
        let mirror = self.mirror.to_string_lossy().into_owned();
        let mut rest = vec!["--artifacts", mirror.as_str()];
        rest.extend_from_slice(extra);
        let out = self.lab.with_inventory(&["--json", "init"], &rest);
        let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, report)
    }

    /// The memory pod `pod` (in `namespace`, or kubectl's default) uses: its JVMs' resident
    /// set (ps), its app container's cgroup usage now and its peak so far (v2, else v1).
    pub fn pod_memory(&self, namespace: Option<&str>, pod: &str) -> String {
        let mut args = namespace.map_or(vec![], |ns| vec!["-n", ns]);
        args.extend_from_slice(&[
            "exec",
            pod,
            "-c",
            "app",
            "--",
            "bash",
            "-c",
            "rss=$(ps -C java -o rss= | awk '{s+=$1} END {print int(s/1024)}'); \
             cg=$(cat /sys/fs/cgroup/memory.current 2>/dev/null || \
                  cat /sys/fs/cgroup/memory/memory.usage_in_bytes 2>/dev/null || echo 0); \
             pk=$(cat /sys/fs/cgroup/memory.peak 2>/dev/null || \
                  cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null || echo 0); \
             echo \"java RSS ${rss} MiB, cgroup $((cg / 1048576)) MiB, peak $((pk / 1048576)) MiB\"",
        ]);
        stdout(&self.kubectl(&args)).trim().to_string()
    }

    /// [`Cluster::pod_memory`] of every pod of app instance `instance`.
    pub fn member_memory(&self, namespace: Option<&str>, instance: &str) -> Vec<(String, String)> {
        let selector = format!("director-boot.io/instance={instance}");
        let mut args = namespace.map_or(vec![], |ns| vec!["-n", ns]);
        args.extend_from_slice(&[
            "get",
            "pods",
            "-l",
            &selector,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ]);
        stdout(&self.kubectl(&args))
            .lines()
            .filter(|p| !p.is_empty())
            .map(|pod| (pod.to_string(), self.pod_memory(namespace, pod)))
            .collect()
    }

    /// Poll kubectl until `ok` holds for its stdout, or fail after `secs`.
    pub fn wait_for(&self, args: &[&str], secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.kubectl(args);
            let text = stdout(&out);
            if out.status.success() && ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} did not get there in {secs} s: {text}{}",
                stderr(&out)
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}
