//! Issue 4's acceptance on a real 3-node lab (real kernel VXLAN, containerd, CNI, kubelet):
//! pods on different nodes talk over the overlay, a host service exposed with `overlay expose`
//! is reachable from a pod, `netcheck` measures every pair in pods mode (matrices, --json,
//! --html, rendered by headless Chromium when it is installed), and diagnoses the faults we
//! inject: the overlay's UDP port dropped by iptables on node3, a node whose underlay MTU is
//! smaller than the overlay needs, and a stopped node (which must end its pairs, not hang).
//! Then the overlay survives node3's reboot, and removing/re-adding a host from the inventory
//! removes/re-adds it on its peers. No throughput figure is asserted (figures are for the
//! benchmark); every test here is about behaviour.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn pair<'a>(report: &'a serde_json::Value, from: &str, to: &str) -> &'a serde_json::Value {
    report["pairs"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["from"] == from && p["to"] == to))
        .unwrap_or_else(|| panic!("no pair {from} -> {to} in {report}"))
}

fn codes(p: &serde_json::Value) -> Vec<String> {
    p["diagnoses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{}@{}",
                d["code"].as_str().unwrap_or(""),
                d["host"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

/// Run director-boot with a hard limit: a hang is a failure, not a stuck CI job.
fn db_bounded(state: &Path, args: &[&str], limit: Duration) -> (Output, Duration) {
    require_lab_bridge();
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", state)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn director-boot");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "director-boot {} did not finish within {} s (a hang)\n{}{}",
                args.join(" "),
                limit.as_secs(),
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    eprintln!(
        "$ director-boot {}  ({:.1} s)\n{}{}",
        args.join(" "),
        t0.elapsed().as_secs_f64(),
        stdout(&out),
        stderr(&out)
    );
    (out, t0.elapsed())
}

fn pod(name: &str, node: &str, image: &str, command: &[&str]) -> String {
    serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"namespace":"default"},
        "spec":{"nodeName":node,"terminationGracePeriodSeconds":0,
        "containers":[{"name":"c","image":image,"imagePullPolicy":"Never","command":command}]}})
    .to_string()
}

#[test]
fn overlay_netcheck_and_fault_diagnosis() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let c = Cluster {
        lab: Lab::up(3),
        mirror,
    };
    let state = c.lab.state.path().to_path_buf();
    let inv = c.lab.inventory.to_string_lossy().into_owned();
    // The faults below are VXLAN's (its UDP port dropped, an underlay too small for its
    // header): pin the backend, as `auto` would route these same-segment peers directly.
    let text = std::fs::read_to_string(&c.lab.inventory).expect("inventory");
    let pinned = text.replace("  overlay:\n", "  overlay:\n    backend: vxlan\n");
    assert_ne!(text, pinned, "no overlay section in {text}");
    std::fs::write(&c.lab.inventory, pinned).expect("write inventory");
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init failed: {report}");
    c.wait_for(
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ],
        120,
        |s| s.split_whitespace().filter(|w| *w == "True").count() == 3,
    );

    // Pods on node1, node2, node3; node1's talks TCP to the other two across the overlay.
    let busybox = "docker.io/library/busybox:1.35";
    let dir = state.join("pods");
    std::fs::create_dir_all(&dir).expect("pods dir");
    for i in 1..=3 {
        let f = dir.join(format!("echo{i}.json"));
        std::fs::write(
            &f,
            pod(
                &format!("echo{i}"),
                &format!("node{i}"),
                busybox,
                &["nc", "-ll", "-p", "7000", "-e", "cat"],
            ),
        )
        .expect("write pod");
        assert!(
            c.kubectl(&["apply", "-f", &f.to_string_lossy()])
                .status
                .success()
        );
    }
    assert!(
        c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod/echo1",
            "pod/echo2",
            "pod/echo3",
            "--timeout=120s"
        ])
        .status
        .success()
    );
    for target in ["echo2", "echo3"] {
        let ip = stdout(&c.kubectl(&["get", "pod", target, "-o", "jsonpath={.status.podIP}"]));
        let out = c.kubectl(&[
            "exec",
            "echo1",
            "--",
            "sh",
            "-c",
            &format!("echo hello-{target} | nc -w 3 {ip} 7000"),
        ]);
        assert_eq!(
            stdout(&out).trim(),
            format!("hello-{target}"),
            "TCP echo1 -> {target} ({ip})"
        );
    }

    // overlay status agrees with the inventory.
    let out = c.lab.with_inventory(&["overlay", "status"], &[]);
    assert!(out.status.success(), "overlay status: {}", stdout(&out));
    assert_eq!(stdout(&out).matches(" 2/2 ").count(), 3, "{}", stdout(&out));

    // overlay expose: a service on node2's host, reached from a pod on node3.
    let out = c
        .lab
        .with_inventory(&["--json", "overlay", "expose"], &["node2"]);
    assert!(out.status.success(), "expose: {}", stderr(&out));
    let exposed = json_of(&out)["address"]
        .as_str()
        .expect("address")
        .to_string();
    let server = format!(
        "nohup perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>\"{exposed}\",LocalPort=>8099,Listen=>5,ReuseAddr=>1) or die $!; while($c=$s->accept){{print $c \"exposed-ok\\n\"; close $c}}' >/dev/null 2>&1 & echo $!"
    );
    let pid = stdout(&c.lab.ssh(&node_addr(2), &server))
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(500));
    let out = c.kubectl(&[
        "exec",
        "echo3",
        "--",
        "sh",
        "-c",
        &format!("nc -w 3 {exposed} 8099 </dev/null"),
    ]);
    assert_eq!(
        stdout(&out).trim(),
        "exposed-ok",
        "pod on node3 -> {exposed}:8099 on node2's host"
    );
    c.lab.ssh(&node_addr(2), &format!("kill {pid}"));

    // netcheck in pods mode: every ordered pair over TCP and UDP, with the underlay baseline,
    // and the extras: same-node pairs (a second probe pod per node), pod to ClusterIP and to
    // NodePort, connection rate, both directions at once, CPU per Gbit.
    let html = state.join("netcheck.html");
    let html_s = html.to_string_lossy().into_owned();
    let (out, _) = db_bounded(
        &state,
        &[
            "--json",
            "netcheck",
            &inv,
            "--mode",
            "pods",
            "--duration",
            "1",
            "--streams",
            "2",
            "--min-efficiency",
            "0.2",
            // A loaded 2-core machine loses UDP on healthy paths (24 % overlay, 92 % underlay
            // seen while other labs ran): this run checks what is measured, not the loss.
            "--max-udp-loss",
            "0.5",
            "--html",
            &html_s,
        ],
        Duration::from_secs(600),
    );
    let r = json_of(&out);
    assert_eq!(r["mode"], "pods", "{r}");
    assert_eq!(r["pairs"].as_array().map(Vec::len), Some(6));
    for p in r["pairs"].as_array().into_iter().flatten() {
        for path in ["overlay", "underlay"] {
            let m = &p[path];
            assert!(m["tcp_bps"].as_f64().unwrap_or(0.0) > 1e6, "{path} TCP {p}");
            assert!(
                m["tcp_multi_bps"].as_f64().unwrap_or(0.0) > 1e6,
                "{path} TCP x2 {p}"
            );
            assert!(m["udp_bps"].as_f64().unwrap_or(0.0) > 1e6, "{path} UDP {p}");
            assert!(m["rr_p50_us"].as_f64().is_some(), "{path} RR {p}");
        }
        assert_eq!(p["overlay"]["path_mtu"], 1450, "{p}");
        assert!(p["efficiency"].as_f64().is_some());
        assert_eq!(p["scope"], "cross-node", "{p}");
        assert!(p["multi_efficiency"].as_f64().is_some(), "{p}");
        assert!(p["bidir_efficiency"].as_f64().is_some(), "{p}");
        assert!(p["backend"].as_str().is_some_and(|b| !b.is_empty()), "{p}");
        assert!(p["encrypted"].is_boolean(), "{p}");
        for path in ["overlay", "underlay"] {
            let m = &p[path];
            for f in ["bidir_out_bps", "bidir_in_bps"] {
                assert!(m[f].as_f64().unwrap_or(0.0) > 1e6, "{path} {f} {p}");
            }
            assert!(
                m["crr_per_sec"].as_f64().unwrap_or(0.0) > 1.0,
                "{path} CRR {p}"
            );
            for f in ["tcp_sender_cpu_s_per_gbit", "tcp_receiver_cpu_s_per_gbit"] {
                assert!(m[f].as_f64().is_some(), "{path} {f} {p}");
            }
        }
    }
    let same: Vec<&serde_json::Value> = r["same_node"].as_array().into_iter().flatten().collect();
    assert_eq!(same.len(), 3, "{r}");
    for p in same {
        assert_eq!(p["scope"], "same-node", "{p}");
        assert_eq!(p["from"], p["to"], "{p}");
        assert!(p["overlay"]["tcp_bps"].as_f64().unwrap_or(0.0) > 1e6, "{p}");
        assert!(
            p["overlay"]["crr_per_sec"].as_f64().unwrap_or(0.0) > 1.0,
            "{p}"
        );
        assert!(
            p["efficiency"].is_null(),
            "no underlay to compare with: {p}"
        );
        assert_eq!(p["passed"], true, "{p}");
    }
    let services: Vec<&serde_json::Value> =
        r["services"].as_array().into_iter().flatten().collect();
    let kinds: Vec<&str> = services.iter().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(kinds, ["clusterip", "nodeport"], "{r}");
    for s in services {
        let m = &s["measurement"];
        assert_eq!(s["passed"], true, "{s}");
        assert!(m["tcp_bps"].as_f64().unwrap_or(0.0) > 1e6, "{s}");
        assert!(m["rr_p50_us"].as_f64().is_some(), "{s}");
        assert!(m["crr_per_sec"].as_f64().unwrap_or(0.0) > 1.0, "{s}");
    }
    assert!(
        out.status.success(),
        "netcheck failed on a healthy lab: {r}"
    );
    let page = std::fs::read_to_string(&html).expect("html report");
    assert_eq!(page.matches("<table class=\"heat\">").count(), 3);
    for table in [
        "Every cross-node pair",
        "Same node",
        "Services, through kube-proxy",
    ] {
        assert!(page.contains(table), "HTML report lacks {table}");
    }
    if let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    {
        let png = state.join("netcheck.png");
        let profile = tempfile::tempdir().expect("chromium profile");
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1300,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", html.display()))
            .output()
            .expect("run chromium");
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 20_000,
            "chromium screenshot {size} bytes: {}",
            stderr(&out)
        );
        if let Ok(keep) = std::env::var("NETCHECK_SCREENSHOT") {
            let _ = std::fs::copy(&png, keep);
        }
    } else {
        eprintln!("chromium not installed: HTML checked as text only");
    }
    // The terminal report has the matrices.
    let (out, _) = db_bounded(
        &state,
        &[
            "netcheck",
            &inv,
            "--mode",
            "netns",
            "--pairs",
            "ring",
            "--duration",
            "1",
            "--streams",
            "1",
            // The extras are checked in the pods run above; CI time is kept for the faults.
            "--skip",
            "same-node,services,bidir,crr",
            "--min-efficiency",
            "0.2",
            // This step checks the report, not the lab's figures: an unlimited UDP blast on a
            // loaded 2-core machine loses 5-30 % of its packets (the underlay too), as the
            // efficiency varies, so both thresholds are loose here.
            "--max-udp-loss",
            "0.5",
        ],
        Duration::from_secs(300),
    );
    let text = stdout(&out);
    assert!(
        text.contains("TCP, 1 stream, Gbit/s: overlay (underlay) efficiency"),
        "{text}"
    );
    assert!(text.contains("UDP, Gbit/s received"), "{text}");
    assert!(out.status.success(), "{text}");

    // Ctrl-C while measuring: the probe servers and namespaces are removed before it exits.
    require_lab_bridge();
    let mut child = Command::new(BIN)
        .env("DIRECTOR_BOOT_STATE_DIR", &state)
        .args([
            "netcheck",
            &inv,
            "--mode",
            "netns",
            "--duration",
            "3",
            "--streams",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netcheck");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stdout(&c.lab.ssh(&node_addr(3), "ip netns list")).contains("dbnc") {
        assert!(Instant::now() < deadline, "netcheck never set up node3");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "netcheck ignored Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        !out.status.success(),
        "an interrupted netcheck must not pass"
    );
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    for node in [node_addr(1), node_addr(2), node_addr(3)] {
        let left = stdout(&c.lab.ssh(
            &node,
            "ip netns list | grep dbnc; systemctl is-active director-boot-netcheck-underlay director-boot-netcheck-overlay director-boot-netcheck-peer | grep -x active; ip link show dbnc-h 2>/dev/null; ip link show dbnc-hp 2>/dev/null; true",
        ));
        assert_eq!(left.trim(), "", "{node} kept netcheck residue after Ctrl-C");
    }

    // Fault 1: node3 drops the overlay's UDP port.
    let drop_rule = "INPUT -p udp --dport 4789 -j DROP";
    assert!(
        c.lab
            .ssh(&node_addr(3), &format!("iptables -w -I {drop_rule}"))
            .status
            .success()
    );
    let (out, _) = db_bounded(
        &state,
        &[
            "--json",
            "netcheck",
            &inv,
            "--mode",
            "netns",
            "--duration",
            "1",
            "--streams",
            "1",
            // The faults are about the cross-node pairs' diagnosis: no extras.
            "--skip",
            "same-node,services,bidir,crr",
            // ... and a healthy pair must not fail on the UDP loss of a loaded 2-core machine
            // (13 % overlay, 7 % underlay seen).
            "--max-udp-loss",
            "0.5",
            "--min-efficiency",
            "0.2",
            "--pair-timeout",
            "15",
        ],
        Duration::from_secs(600),
    );
    c.lab
        .ssh(&node_addr(3), &format!("iptables -w -D {drop_rule}"));
    assert_eq!(out.status.code(), Some(1), "netcheck must fail");
    let r = json_of(&out);
    for (a, b) in [("node1", "node3"), ("node2", "node3"), ("node3", "node1")] {
        let p = pair(&r, a, b);
        assert_eq!(p["passed"], false, "{p}");
        assert!(
            codes(p).contains(&"blocked-overlay-port@node3".to_string()),
            "{a}->{b}: {:?}",
            codes(p)
        );
    }
    assert_eq!(pair(&r, "node1", "node2")["passed"], true);
    assert_eq!(pair(&r, "node2", "node1")["passed"], true);

    // Fault 2: node3's underlay MTU is too small for the overlay's.
    assert!(
        c.lab
            .ssh(&node_addr(3), "ip link set eth0 mtu 1400")
            .status
            .success()
    );
    let (out, _) = db_bounded(
        &state,
        &[
            "--json",
            "netcheck",
            &inv,
            "--mode",
            "netns",
            "--pairs",
            "ring",
            "--duration",
            "1",
            "--streams",
            "1",
            // The faults are about the cross-node pairs' diagnosis: no extras.
            "--skip",
            "same-node,services,bidir,crr",
            // ... and a healthy pair must not fail on the UDP loss of a loaded 2-core machine
            // (13 % overlay, 7 % underlay seen).
            "--max-udp-loss",
            "0.5",
            "--min-efficiency",
            "0.2",
            "--pair-timeout",
            "15",
        ],
        Duration::from_secs(600),
    );
    c.lab.ssh(&node_addr(3), "ip link set eth0 mtu 1500");
    assert_eq!(out.status.code(), Some(1), "netcheck must fail");
    let r = json_of(&out);
    let p = pair(&r, "node2", "node3");
    assert!(
        codes(p).contains(&"mtu@node3".to_string()),
        "{:?} {p}",
        codes(p)
    );

    // Fault 3: node3 is down; its pairs end with a named error, the rest are measured.
    assert!(c.lab.run(&["lab", "stop", "node3"]).status.success());
    let (out, took) = db_bounded(
        &state,
        &[
            "--json",
            "netcheck",
            &inv,
            "--mode",
            "netns",
            "--pairs",
            "ring",
            "--duration",
            "1",
            "--streams",
            "1",
            // The faults are about the cross-node pairs' diagnosis: no extras.
            "--skip",
            "same-node,services,bidir,crr",
            // ... and a healthy pair must not fail on the UDP loss of a loaded 2-core machine
            // (13 % overlay, 7 % underlay seen).
            "--max-udp-loss",
            "0.5",
            "--min-efficiency",
            "0.2",
            "--connect-timeout",
            "5",
        ],
        Duration::from_secs(300),
    );
    assert_eq!(out.status.code(), Some(1));
    let r = json_of(&out);
    assert!(
        r["node_errors"].to_string().contains("node3"),
        "{}",
        r["node_errors"]
    );
    let p = pair(&r, "node2", "node3");
    assert!(
        p["overlay"]["failed"]
            .as_str()
            .unwrap_or("")
            .contains("node3"),
        "{p}"
    );
    assert_eq!(pair(&r, "node1", "node2")["passed"], true);
    eprintln!(
        "netcheck with node3 down ended in {:.1} s",
        took.as_secs_f64()
    );

    // node3 boots again: the overlay comes back by itself.
    assert!(c.lab.run(&["lab", "start", "node3"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = c.lab.with_inventory(&["overlay", "status"], &[]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "overlay not back after node3's reboot: {}",
            stdout(&out)
        );
        std::thread::sleep(Duration::from_secs(3));
    }

    // Remove node3 from the inventory: its peers drop it. Put it back: they add it again.
    let full = std::fs::read_to_string(&c.lab.inventory).expect("inventory");
    let cut = full
        .split("\n- name: node3")
        .next()
        .expect("inventory without node3")
        .to_string()
        + "\n";
    let small = state.join("two-nodes.yaml");
    std::fs::write(&small, &cut).expect("write inventory");
    let small_s = small.to_string_lossy().into_owned();
    assert!(c.lab.run(&["overlay", "up", &small_s]).status.success());
    let out = c.lab.run(&["overlay", "status", &small_s]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(stdout(&out).matches(" 1/1 ").count(), 2, "{}", stdout(&out));
    let routes = stdout(&c.lab.ssh(&node_addr(1), "ip -4 route show proto 213"));
    assert_eq!(
        routes.lines().count(),
        1,
        "node1 still routes to node3: {routes}"
    );
    assert!(
        c.lab
            .with_inventory(&["overlay", "up"], &[])
            .status
            .success()
    );
    let out = c.lab.with_inventory(&["overlay", "status"], &[]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(stdout(&out).matches(" 2/2 ").count(), 3, "{}", stdout(&out));
}
