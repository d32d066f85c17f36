//! Issue 15's Cassandra acceptance on a real 4-node lab: the image built by
//! scripts/build-app-images.sh (Debian + OpenJDK 17 + Cassandra's jars from Maven Central)
//! side-loaded, `deploy-app cassandra` (2 seeds + 1 worker) to `nodetool status` showing 3 `UN`,
//! 10,000 rows written through CQL from outside the cluster (PyPI's cassandra-driver through a
//! member's NodePort) into a keyspace of replication factor 3 and read back at consistency ALL,
//! then one member's pod deleted: it comes back on its volume with the same host ID and every
//! row is there. With DIRECTOR_BOOT_LONG_TESTS=1 also `apps scale` of the workers 1 -> 2 -> 1:
//! the ring shows the join, then the decommission, and the rows still read back at ALL.
//! Skipped with a reason when the image archive has not been built.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const NS: &str = "cassandra";
const ROWS: &str = "10000";
/// PyPI's CQL driver, in a venv of the cache (made on first use).
const DRIVER: &str = "cassandra-driver==3.29.2";

fn archive() -> PathBuf {
    cache_dir().join("app-images/cassandra.tar")
}

/// The venv's python with the CQL driver; made (once) with the host's python3 and pip.
fn cql_python() -> PathBuf {
    let venv = cache_dir().join("cql-client");
    let python = venv.join("bin/python");
    let ready = venv.join(".driver-installed");
    if ready.exists() && std::fs::read_to_string(&ready).unwrap_or_default() == DRIVER {
        return python;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv")
        .success();
    assert!(ok, "python3 -m venv {} failed", venv.display());
    let ok = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", DRIVER])
        .status()
        .expect("pip")
        .success();
    assert!(ok, "pip install {DRIVER} failed");
    std::fs::write(&ready, DRIVER).expect("venv marker");
    python
}

/// tests/support/cql_rows.py against node1's NodePort of `cassandra-seed-0`'s CQL port.
/// Prints how long it took.
fn cql(python: &Path, port: &str, args: &[&str]) -> String {
    require_lab_bridge();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/cql_rows.py");
    let t0 = Instant::now();
    // A run that only timed out or lost its connection (on this loaded lab host a member can
    // stall past the driver's heartbeat or the server's request timeout) exits 75 and is run
    // again from scratch, twice: the write is idempotent (same rows, IF NOT EXISTS schema); a
    // read that finds rows missing or wrong exits 1 and is never retried.
    let mut attempt = 1;
    let text = loop {
        let out = Command::new(python)
            .arg(&script)
            .arg(node_addr(1))
            .arg(port)
            .args(args)
            .output()
            .expect("run cql_rows.py");
        let text = stdout(&out);
        if out.status.success() {
            break text;
        }
        let err = stderr(&out);
        let transient = out.status.code() == Some(75);
        assert!(
            transient && attempt < 3,
            "cql_rows.py {args:?} (attempt {attempt}): {text}{err}"
        );
        eprintln!("cql_rows.py {args:?} attempt {attempt} timed out, retrying: {err}");
        attempt += 1;
        std::thread::sleep(Duration::from_secs(15));
    };
    eprintln!(
        "cql_rows.py {args:?} in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        text.trim()
    );
    text
}

/// `apps scale cassandra --role worker --members N`, its progress lines (stderr) stamped with
/// the seconds since the start as they come, so each step's wall time shows: the members'
/// readiness, then each hook (`addnodes in POD`, `delnodes in POD`) until the next line.
/// Returns stdout + stderr and the stamped lines.
fn timed_scale(c: &Cluster, members: &str) -> (bool, String, Vec<(f64, String)>) {
    use std::io::{BufRead, BufReader};
    require_lab_bridge();
    let args = [
        "apps",
        "scale",
        "cassandra",
        "--role",
        "worker",
        "--members",
        members,
        "--timeout",
        "1500",
    ];
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", c.lab.state.path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run director-boot apps scale");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let mut stamped = Vec::new();
    let mut text = String::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let Ok(line) = line else { break };
        let at = t0.elapsed().as_secs_f64();
        eprintln!("[{at:7.1} s] {line}");
        text.push_str(&line);
        text.push('\n');
        stamped.push((at, line));
    }
    let ok = child.wait().expect("wait apps scale").success();
    let stdout = reader.join().unwrap_or_default();
    let end = t0.elapsed().as_secs_f64();
    eprintln!("$ director-boot {} ({end:.1} s)\n{stdout}", args.join(" "));
    stamped.push((end, "(done)".to_string()));
    (ok, stdout + &text, stamped)
}

/// Seconds from the first line containing `from` to the next line after the last one
/// containing `from` (a hook run lasts until the next progress line), or to `to` when given.
fn span(stamped: &[(f64, String)], from: &str) -> f64 {
    let first = stamped.iter().position(|(_, l)| l.contains(from));
    let last = stamped.iter().rposition(|(_, l)| l.contains(from));
    match (first, last) {
        (Some(f), Some(l)) => stamped.get(l + 1).map_or(0.0, |n| n.0) - stamped[f].0,
        _ => 0.0,
    }
}

/// Seconds from the start to the first line containing `until`.
fn until(stamped: &[(f64, String)], until: &str) -> f64 {
    stamped
        .iter()
        .find(|(_, l)| l.contains(until))
        .map_or(0.0, |(t, _)| *t)
}

fn exec(c: &Cluster, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["-n", NS, "exec", pod, "-c", "app", "--"];
    args.extend_from_slice(cmd);
    let out = c.kubectl(&args);
    assert!(out.status.success(), "{pod}: {cmd:?}: {}", stderr(&out));
    stdout(&out)
}

/// `nodetool status` lines of nodes Up and Normal.
fn up_normal(status: &str) -> usize {
    status.lines().filter(|l| l.starts_with("UN ")).count()
}

/// Wait until `nodetool status` (from `pod`) shows exactly `n` nodes, all `UN`.
fn wait_ring(c: &Cluster, pod: &str, n: usize, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = c.kubectl(&[
            "-n", NS, "exec", pod, "-c", "app", "--", "nodetool", "status",
        ]);
        let s = stdout(&out);
        let nodes = s
            .lines()
            .filter(|l| l.len() > 3 && l.as_bytes()[2] == b' ' && "UD".contains(&l[..1]))
            .count();
        if out.status.success() && nodes == n && up_normal(&s) == n {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the ring never showed {n} UN nodes: {s}"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn host_id(c: &Cluster, pod: &str) -> String {
    let info = exec(c, pod, &["nodetool", "info"]);
    info.lines()
        .find_map(|l| {
            l.strip_prefix("ID")
                .map(|v| v.trim_start_matches([' ', ':']))
        })
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no host ID in nodetool info: {info}"))
}

/// Without a default StorageClass, one local PersistentVolume (no class) per node and two
/// spares, so the members' claims bind; with one, nothing.
fn volumes(c: &Cluster) {
    let classes = stdout(&c.kubectl(&[
        "get",
        "storageclass",
        "-o",
        "jsonpath={.items[*].metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class}",
    ]));
    if classes.contains("true") {
        eprintln!("the cluster has a default StorageClass: members' claims use it");
        return;
    }
    let nodes = stdout(&c.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type==\"InternalIP\")].address}{\"\\n\"}{end}",
    ]));
    let mut pvs = String::new();
    for (i, line) in nodes.lines().enumerate() {
        let mut w = line.split_whitespace();
        let (Some(name), Some(addr)) = (w.next(), w.next()) else {
            continue;
        };
        for k in 0..2 {
            let dir = format!("/var/lib/lab-volumes/pv{i}-{k}");
            let out = c.lab.ssh(addr, &format!("mkdir -p {dir}"));
            assert!(out.status.success(), "{name}: mkdir {dir}");
            pvs.push_str(&format!(
                "---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: lab-pv{i}-{k}}}\n\
                 spec:\n  capacity: {{storage: 2Gi}}\n  accessModes: [ReadWriteOnce]\n  \
                 persistentVolumeReclaimPolicy: Retain\n  local: {{path: {dir}}}\n  \
                 nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        \
                 - {{key: kubernetes.io/hostname, operator: In, values: [{name}]}}\n"
            ));
        }
    }
    let file = c.lab.state.path().join("lab-pvs.yaml");
    std::fs::write(&file, pvs).expect("pv file");
    let out = c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
    assert!(out.status.success(), "local PVs: {}", stderr(&out));
}

fn wait_ready(c: &Cluster, pod: &str, not_uid: &str, secs: u64) {
    c.wait_for(
        &[
            "-n",
            NS,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.metadata.uid} {.status.containerStatuses[0].ready}",
        ],
        secs,
        |s| !s.starts_with(not_uid) && s.ends_with(" true"),
    );
}

#[test]
fn cassandra_ring_keeps_rows_through_a_pod_restart_and_scaling() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let archive = archive();
    if !archive.exists() {
        eprintln!(
            "skipped: no Cassandra image at {} (scripts/build-app-images.sh cassandra)",
            archive.display()
        );
        return;
    }
    let python = cql_python();
    let t_all = Instant::now();
    let c = Cluster {
        lab: Lab::up(4),
        mirror: lab_mirror(),
    };
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init failed: {report}");
    let archive_s = archive.to_string_lossy().into_owned();
    let t0 = Instant::now();
    let out = c.lab.with_inventory(&["images", "load"], &[&archive_s]);
    assert!(out.status.success(), "images load: {}", stderr(&out));
    eprintln!(
        "images load cassandra.tar on 4 nodes: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    volumes(&c);

    // deploy-app: 2 seeds and a worker, joined one at a time, each Ready when UN.
    let t0 = Instant::now();
    let out = c.lab.run(&["deploy-app", "cassandra", "--timeout", "900"]);
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "deploy-app cassandra: {}{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!(
        "deploy-app cassandra: 3 members Ready in {:.1} s",
        took.as_secs_f64()
    );
    let ring = wait_ring(&c, "cassandra-seed-0", 3, 120);
    eprintln!("nodetool status:\n{ring}");
    for pod in ["cassandra-seed-0", "cassandra-seed-1", "cassandra-worker-0"] {
        eprintln!("memory {}", c.pod_memory(Some(NS), pod));
    }

    // 10,000 rows through CQL from outside, replication factor 3; all back at ALL.
    let port = stdout(&c.kubectl(&[
        "-n",
        NS,
        "get",
        "svc",
        "cassandra-seed-0",
        "-o",
        "jsonpath={.spec.ports[?(@.port==9042)].nodePort}",
    ]));
    let port = port.trim().to_string();
    cql(&python, &port, &["write", ROWS, "QUORUM"]);
    cql(&python, &port, &["read", ROWS, "ALL"]);

    // A member's pod deleted: it comes back on its claim with the same host ID.
    let victim = "cassandra-seed-1";
    let id = host_id(&c, victim);
    let uid = stdout(&c.kubectl(&[
        "-n",
        NS,
        "get",
        "pod",
        victim,
        "-o",
        "jsonpath={.metadata.uid}",
    ]));
    let t0 = Instant::now();
    let out = c.kubectl(&["-n", NS, "delete", "pod", victim, "--wait=true"]);
    assert!(out.status.success());
    wait_ready(&c, victim, uid.trim(), 600);
    eprintln!(
        "{victim} deleted and Ready again in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        host_id(&c, victim),
        id,
        "{victim} came back as another node"
    );
    wait_ring(&c, "cassandra-seed-0", 3, 180);
    cql(&python, &port, &["read", ROWS, "ALL"]);

    if long_tests() {
        // Scale the workers 1 -> 2 (a join, cleanup on the others) -> 1 (a decommission).
        let (ok, text, stamped) = timed_scale(&c, "2");
        assert!(ok, "scale to 2: {text}");
        let ring = wait_ring(&c, "cassandra-seed-0", 4, 300);
        eprintln!(
            "scaled to 4: join (cassandra-worker-1 Ready, UN) {:.1} s, cleanup (addnodes) {:.1} s, \
             {:.1} s in all:\n{ring}",
            until(&stamped, "addnodes in"),
            span(&stamped, "addnodes in"),
            stamped.last().map_or(0.0, |l| l.0)
        );
        let (ok, text, stamped) = timed_scale(&c, "1");
        assert!(ok, "scale to 1: {text}");
        assert!(
            text.contains("delnodes ran in cassandra-worker-1"),
            "no decommission: {text}"
        );
        let ring = wait_ring(&c, "cassandra-seed-0", 3, 300);
        eprintln!(
            "scaled to 3: decommission (delnodes in cassandra-worker-1) {:.1} s, cleanup \
             (delnodes in the rest) {:.1} s, {:.1} s in all:\n{ring}",
            span(&stamped, "delnodes in cassandra-worker-1"),
            span(&stamped, "delnodes in cassandra-seed-")
                + span(&stamped, "delnodes in cassandra-worker-0"),
            stamped.last().map_or(0.0, |l| l.0)
        );
        assert!(
            !c.kubectl(&["-n", NS, "get", "pod", "cassandra-worker-1"])
                .status
                .success()
        );
        cql(&python, &port, &["read", ROWS, "ALL"]);
    }
    eprintln!(
        "cassandra lab test: {:.1} s in all",
        t_all.elapsed().as_secs_f64()
    );
}
