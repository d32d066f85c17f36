//! Issue 15's Hadoop acceptance on a real 4-node lab: the Hadoop image (built by
//! scripts/build-app-images.sh hadoop from Debian, OpenJDK and Maven Central's jars)
//! side-loaded with `images load`, `deploy-app hadoop` (2 DataNodes, 2 NodeManagers) to every
//! member Ready (time and each member's memory reported), the NameNode and ResourceManager web
//! UIs through their NodePorts, a 256 MiB file through `hdfs dfs -put`/`-get` byte-identical
//! and MapReduce's pi on YARN.
//!
//! With DIRECTOR_BOOT_LONG_TESTS=1 also: TeraGen (1 GB) + TeraSort + TeraValidate on YARN
//! (times reported), then DataNodes 2 -> 3 -> 2, the last step through HDFS decommissioning
//! (the NameNode's delnodes hook), with every file still fully replicated and readable.
//!
//! Skipped with a reason when the Hadoop image archive has not been built.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const NN: &str = "hadoop-namenode-0";
const RM: &str = "hadoop-resourcemanager-0";
/// 256 MiB.
const PUT_BYTES: u64 = 256 * 1024 * 1024;

fn hadoop_archive() -> PathBuf {
    cache_dir().join("app-images/hadoop.tar")
}

/// A shell script in a member's `app` container, with the cluster's Hadoop configuration.
fn in_member(c: &Cluster, pod: &str, script: &str) -> Output {
    let full = format!("set -euo pipefail; . /etc/director-boot/hadoop-conf.sh; {script}");
    c.kubectl(&["exec", pod, "-c", "app", "--", "bash", "-c", &full])
}

fn must(c: &Cluster, pod: &str, what: &str, script: &str) -> (String, Duration) {
    let t0 = Instant::now();
    let out = in_member(c, pod, script);
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{what} in {pod} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    eprintln!("{what}: {:.1} s", took.as_secs_f64());
    (stdout(&out) + &stderr(&out), took)
}

/// sha256 of a file in the NameNode's pod, or of an HDFS file (`hdfs:/path`).
fn sha_in(c: &Cluster, path: &str) -> String {
    let script = match path.strip_prefix("hdfs:") {
        Some(p) => format!("hdfs dfs -cat {p} | sha256sum"),
        None => format!("sha256sum < {path}"),
    };
    let (out, _) = must(c, NN, &format!("sha256 of {path}"), &script);
    out.split_whitespace().next().unwrap_or("").to_string()
}

/// GET a member Service's NodePort on node1 (the lab bridge must be up).
fn via_node_port(c: &Cluster, svc: &str, port: u16, path: &str) -> String {
    let node_port = stdout(&c.kubectl(&[
        "get",
        "svc",
        svc,
        "-o",
        &format!("jsonpath={{.spec.ports[?(@.port=={port})].nodePort}}"),
    ]));
    require_lab_bridge();
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "10"])
        .arg(format!(
            "http://{}:{}{path}",
            node_addr(1),
            node_port.trim()
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "GET {svc}:{port}{path} through NodePort {} failed",
        node_port.trim()
    );
    stdout(&out)
}

fn live_datanodes(jmx: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(jmx).unwrap_or_default();
    v["beans"][0]["LiveNodes"]
        .as_str()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|n| n.as_object().map(|o| o.len()))
        .unwrap_or(0)
}

fn active_nodemanagers(metrics: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(metrics).unwrap_or_default();
    v["clusterMetrics"]["activeNodes"].as_u64().unwrap_or(0)
}

/// `Under replicated blocks` and `Missing blocks` from `hdfs dfsadmin -report`.
fn replication_health(c: &Cluster) -> (u64, u64) {
    let (report, _) = must(c, NN, "dfsadmin -report", "hdfs dfsadmin -report");
    let field = |name: &str| {
        report
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (field("Under replicated blocks:"), field("Missing blocks:"))
}

fn scale_datanodes(c: &Cluster, members: u32) -> (String, Duration) {
    let n = members.to_string();
    let t0 = Instant::now();
    let out = c.lab.run(&[
        "--json",
        "apps",
        "scale",
        "hadoop",
        "--role",
        "datanode",
        "--members",
        &n,
        "--timeout",
        "1200",
    ]);
    let took = t0.elapsed();
    let text = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "scale datanodes to {members}: {text}");
    // The hooks' own output (the text report only names them).
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let hooks: String = v["hooks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            format!(
                "{} in {}: {}{}\n",
                h["hook"],
                h["pod"],
                h["stdout"].as_str().unwrap_or(""),
                h["stderr"].as_str().unwrap_or("")
            )
        })
        .collect();
    eprintln!("hooks:\n{hooks}");
    let text = text + &hooks;
    eprintln!(
        "apps scale hadoop --role datanode --members {members}: {:.1} s",
        took.as_secs_f64()
    );
    (text, took)
}

fn wait_live_datanodes(c: &Cluster, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let jmx = via_node_port(
            c,
            NN,
            9870,
            "/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo",
        );
        if live_datanodes(&jmx) == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the NameNode never listed {n} live DataNodes: {jmx}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[test]
fn hadoop_deploys_stores_computes_and_decommissions() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let archive = hadoop_archive();
    if !archive.exists() {
        eprintln!(
            "skipped: no Hadoop image at {} (scripts/build-app-images.sh hadoop)",
            archive.display()
        );
        return;
    }
    let c = Cluster {
        lab: Lab::up(4),
        mirror,
    };
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init failed: {report}");
    eprintln!(
        "init (4 nodes): {:.1} s",
        report["seconds"].as_f64().unwrap_or(0.0)
    );
    let archive_s = archive.to_string_lossy().into_owned();

    let t0 = Instant::now();
    let out = c.lab.with_inventory(&["images", "load"], &[&archive_s]);
    assert!(out.status.success(), "images load: {}", stderr(&out));
    eprintln!(
        "images load hadoop.tar (4 nodes): {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // deploy-app hadoop: NameNode, 2 DataNodes, ResourceManager, 2 NodeManagers Ready.
    let t0 = Instant::now();
    let out = c.lab.run(&["deploy-app", "hadoop", "--timeout", "900"]);
    let took = t0.elapsed();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "deploy-app hadoop: {text}{}",
        stderr(&out)
    );
    for role in ["namenode", "datanode", "resourcemanager", "nodemanager"] {
        assert!(text.contains(role), "{text}");
    }
    let node_ip = lab_ip(1);
    let node_prefix = format!("http://{}", node_ip.strip_suffix('1').unwrap_or(&node_ip));
    assert!(
        text.contains(&node_prefix),
        "endpoints with node addresses ({node_prefix}...): {text}"
    );
    eprintln!(
        "deploy-app hadoop: all members Ready in {:.1} s",
        took.as_secs_f64()
    );

    // Data on volumes: a Bound claim per NameNode, DataNode and NodeManager member.
    let claims = stdout(&c.kubectl(&[
        "get",
        "pvc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}",
    ]));
    let bound = claims
        .lines()
        .filter(|l| l.contains("hadoop-") && l.ends_with("=Bound"))
        .count();
    eprintln!("claims:\n{claims}");
    assert_eq!(
        bound, 5,
        "5 Bound claims (namenode, 2 datanodes, 2 nodemanagers): {claims}"
    );

    // Web UIs: the NameNode lists both DataNodes, the ResourceManager both NodeManagers.
    wait_live_datanodes(&c, 2, 180);
    let page = via_node_port(&c, NN, 9870, "/dfshealth.html");
    assert!(page.contains("Namenode information"), "{page}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let m = via_node_port(&c, RM, 8088, "/ws/v1/cluster/metrics");
        if active_nodemanagers(&m) == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RM never saw 2 NodeManagers: {m}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    let page = via_node_port(&c, RM, 8088, "/cluster");
    assert!(
        page.contains("hadoop") || page.contains("Applications"),
        "{page}"
    );

    // 256 MiB through HDFS and back, byte-identical.
    let (_, put) = must(
        &c,
        NN,
        "hdfs dfs -put 256 MiB",
        &format!(
            "head -c {PUT_BYTES} /dev/urandom > /tmp/in.bin && hdfs dfs -put /tmp/in.bin /in.bin"
        ),
    );
    let in_sha = sha_in(&c, "/tmp/in.bin");
    let (_, get) = must(
        &c,
        NN,
        "hdfs dfs -get 256 MiB",
        "rm -f /tmp/out.bin && hdfs dfs -get /in.bin /tmp/out.bin && cmp /tmp/in.bin /tmp/out.bin && echo identical",
    );
    eprintln!(
        "put {:.1} s ({:.0} MiB/s), get {:.1} s ({:.0} MiB/s)",
        put.as_secs_f64(),
        256.0 / put.as_secs_f64(),
        get.as_secs_f64(),
        256.0 / get.as_secs_f64()
    );
    must(&c, NN, "cleanup", "rm -f /tmp/out.bin /tmp/in.bin");

    // The NameNode's metadata is on its volume: a new NameNode pod serves the same file.
    let t0 = Instant::now();
    let out = c.kubectl(&["delete", "pod", NN, "--wait=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_for(
        &[
            "get",
            "pod",
            NN,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        600,
        |s| s.trim() == "True",
    );
    must(&c, NN, "safemode wait", "hdfs dfsadmin -safemode wait");
    assert_eq!(
        sha_in(&c, "hdfs:/in.bin"),
        in_sha,
        "/in.bin after a NameNode restart"
    );
    eprintln!(
        "NameNode pod deleted: Ready again, out of safe mode and /in.bin intact in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // MapReduce on YARN: pi.
    let (pi, _) = must(
        &c,
        RM,
        "yarn jar hadoop-mapreduce-examples pi 2 1000",
        "yarn jar $HADOOP_HOME/share/hadoop/common/lib/hadoop-mapreduce-examples-*.jar pi 2 1000",
    );
    let line = pi
        .lines()
        .find(|l| l.contains("Estimated value of Pi is"))
        .unwrap_or_else(|| panic!("no pi in: {pi}"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!((value - std::f64::consts::PI).abs() < 0.05, "{line}");

    for (pod, mem) in c.member_memory(None, "hadoop") {
        eprintln!("memory {pod}: {mem}");
    }

    if !long_tests() {
        eprintln!("TeraSort and the DataNode decommission: DIRECTOR_BOOT_LONG_TESTS=1");
        return;
    }

    // TeraGen 1 GB (10 million 100-byte rows), TeraSort, TeraValidate.
    let ex = "$HADOOP_HOME/share/hadoop/common/lib/hadoop-mapreduce-examples-*.jar";
    let (_, gen_t) = must(
        &c,
        RM,
        "teragen 1 GB",
        &format!("yarn jar {ex} teragen -Dmapreduce.job.maps=4 10000000 /tera/in"),
    );
    let (_, sort_t) = must(
        &c,
        RM,
        "terasort",
        &format!("yarn jar {ex} terasort -Dmapreduce.job.reduces=2 /tera/in /tera/out"),
    );
    let (validate, val_t) = must(
        &c,
        RM,
        "teravalidate",
        &format!(
            "yarn jar {ex} teravalidate /tera/out /tera/report && \
             hdfs dfs -cat /tera/report/part-r-00000"
        ),
    );
    assert!(validate.contains("checksum"), "{validate}");
    assert!(!validate.contains("misorder"), "{validate}");
    eprintln!(
        "TeraGen {:.1} s, TeraSort {:.1} s, TeraValidate {:.1} s",
        gen_t.as_secs_f64(),
        sort_t.as_secs_f64(),
        val_t.as_secs_f64()
    );
    for (pod, mem) in c.member_memory(None, "hadoop") {
        eprintln!("memory after TeraSort {pod}: {mem}");
    }
    must(
        &c,
        NN,
        "remove tera data",
        "hdfs dfs -rm -r -skipTrash /tera",
    );

    // DataNodes 2 -> 3, a second file written across all three, then 3 -> 2 through
    // decommissioning: nothing under-replicated or missing, both files intact.
    scale_datanodes(&c, 3);
    wait_live_datanodes(&c, 3, 180);
    must(
        &c,
        NN,
        "put a 128 MiB file over 3 DataNodes",
        "head -c 134217728 /dev/urandom > /tmp/in3.bin && \
         hdfs dfs -D dfs.replication=2 -put /tmp/in3.bin /in3.bin && \
         hdfs fsck /in3.bin -files -blocks -locations | grep -E '^[0-9]+\\. '",
    );
    let in3_sha = sha_in(&c, "/tmp/in3.bin");
    must(&c, NN, "cleanup", "rm -f /tmp/in3.bin");
    let (hook, took) = scale_datanodes(&c, 2);
    assert!(hook.contains("decommission"), "no decommission in: {hook}");
    eprintln!(
        "DataNodes 3 -> 2 (decommission): {:.1} s",
        took.as_secs_f64()
    );
    let (under, missing) = replication_health(&c);
    assert_eq!((under, missing), (0, 0), "under-replicated, missing blocks");
    let (fsck, _) = must(&c, NN, "fsck /", "hdfs fsck /");
    assert!(fsck.contains("HEALTHY"), "{fsck}");
    assert_eq!(sha_in(&c, "hdfs:/in.bin"), in_sha, "/in.bin after 3 -> 2");
    assert_eq!(
        sha_in(&c, "hdfs:/in3.bin"),
        in3_sha,
        "/in3.bin after 3 -> 2"
    );
    assert!(
        !c.kubectl(&["get", "pod", "hadoop-datanode-2"])
            .status
            .success(),
        "hadoop-datanode-2 should be gone"
    );
}
