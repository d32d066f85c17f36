//! Issue 18 item 4 on a real 3-node lab: NetworkPolicy enforced by the `network-policy` add-on
//! (kube-network-policies) that init applies. A default-deny ingress policy stops a pod of
//! another namespace, a policy allowing that namespace re-opens it (and only it), an egress
//! policy stops a pod's connection to another node's pod, and netcheck's pod pairs keep passing
//! with a default-deny policy in a user namespace. Then the cost, in one run on the same lab:
//! netcheck with the add-on and a policy selecting the probe pods in both directions, with the
//! add-on and no policy on them, and without the add-on (DaemonSet and its nftables table gone).
//! The figures are printed (`netpol-cost:` lines), not asserted. netcheck reports no CPU; the
//! host's busy CPU seconds during each run are printed instead (the lab shares the host's CPUs).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const BUSYBOX: &str = "docker.io/library/busybox:1.35";
const PORT: u16 = 7000;

fn apply(c: &Cluster, dir: &Path, name: &str, doc: serde_json::Value) {
    // This test's own lab slot's bridge (it runs in lane 1, beside a slot-0 lab).
    require_lab_bridge();
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, doc.to_string()).expect("write manifest");
    let out = c.kubectl(&["apply", "-f", &f.to_string_lossy()]);
    assert!(out.status.success(), "apply {name}: {}", stderr(&out));
}

fn pod(ns: &str, name: &str, node: &str, command: &[&str]) -> serde_json::Value {
    serde_json::json!({"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":name,"namespace":ns,"labels":{"app":name}},
        "spec":{"nodeName":node,"terminationGracePeriodSeconds":0,
        "containers":[{"name":"c","image":BUSYBOX,"imagePullPolicy":"Never","command":command}]}})
}

fn policy(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
        "metadata":{"name":name,"namespace":ns},"spec":spec})
}

/// One TCP connection from pod `from` (namespace/name) to ip:PORT through busybox nc (the
/// server echoes): true when the text came back.
fn connects(c: &Cluster, from: (&str, &str), ip: &str) -> bool {
    // This test's own lab slot's bridge (it runs in lane 1, beside a slot-0 lab).
    require_lab_bridge();
    let out = c.kubectl(&[
        "exec",
        "-n",
        from.0,
        from.1,
        "--",
        "sh",
        "-c",
        &format!("echo np-hello | nc -w 2 {ip} {PORT}"),
    ]);
    stdout(&out).trim() == "np-hello"
}

/// Poll until the connection's outcome is `want` (policies take effect within a sync).
fn until_connects(c: &Cluster, from: (&str, &str), ip: &str, want: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if connects(c, from, ip) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {}/{} -> {ip}:{PORT} still {} after 30 s",
            from.0,
            from.1,
            if want { "blocked" } else { "open" }
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn pod_ip(c: &Cluster, ns: &str, name: &str) -> String {
    stdout(&c.kubectl(&[
        "get",
        "pod",
        "-n",
        ns,
        name,
        "-o",
        "jsonpath={.status.podIP}",
    ]))
    .trim()
    .to_string()
}

/// Busy and total jiffies of this host (the lab nodes share its CPUs).
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

struct Cost {
    label: &'static str,
    passed: bool,
    /// Every pair's overlay carried single-stream TCP.
    tcp_everywhere: bool,
    efficiency: f64,
    udp_loss: f64,
    overlay_gbps: f64,
    underlay_gbps: f64,
    busy_cpu_s: f64,
    wall_s: f64,
}

/// netcheck in pods mode over every pair: mean single-stream efficiency and Gbit/s, and the
/// host CPU seconds spent while it ran (netcheck itself reports no CPU).
fn measure(c: &Cluster, label: &'static str) -> Cost {
    // This test's own lab slot's bridge (it runs in lane 1, beside a slot-0 lab).
    require_lab_bridge();
    let inv = c.lab.inventory.to_string_lossy().into_owned();
    let hz = 100.0; // USER_HZ on Linux
    let (b0, _) = cpu_jiffies();
    let t0 = Instant::now();
    let out = c.lab.run(&[
        "--json",
        "netcheck",
        &inv,
        "--mode",
        "pods",
        "--duration",
        "2",
        "--streams",
        "2",
        // The cross-node pairs are what this test is about; the extras would only add time.
        "--skip",
        "same-node,services,bidir,crr",
        "--min-efficiency",
        "0.2",
        // The lab shares this host's CPUs with whatever else runs: a UDP blast loses a few
        // percent under load. What a policy does to UDP is 90 % and more (see below).
        "--max-udp-loss",
        "0.5",
    ]);
    let wall_s = t0.elapsed().as_secs_f64();
    let (b1, _) = cpu_jiffies();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let pairs: Vec<&serde_json::Value> = r["pairs"].as_array().into_iter().flatten().collect();
    let mean = |f: &dyn Fn(&serde_json::Value) -> Option<f64>| {
        let v: Vec<f64> = pairs.iter().filter_map(|p| f(p)).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let cost = Cost {
        label,
        passed: out.status.success() && pairs.len() == 6,
        tcp_everywhere: pairs.len() == 6
            && pairs
                .iter()
                .all(|p| p["overlay"]["tcp_bps"].as_f64().unwrap_or(0.0) > 1e6),
        efficiency: mean(&|p| p["efficiency"].as_f64()),
        udp_loss: mean(&|p| p["overlay"]["udp_loss"].as_f64()),
        overlay_gbps: mean(&|p| p["overlay"]["tcp_bps"].as_f64()) / 1e9,
        underlay_gbps: mean(&|p| p["underlay"]["tcp_bps"].as_f64()) / 1e9,
        busy_cpu_s: (b1 - b0) as f64 / hz,
        wall_s,
    };
    eprintln!(
        "netpol-cost: {:<34} passed={} pairs={} efficiency(1 stream, mean)={:.3} overlay={:.2} Gbit/s underlay={:.2} Gbit/s overlay-udp-loss={:.1}% host-busy-cpu={:.1} s over {:.1} s",
        cost.label,
        cost.passed,
        pairs.len(),
        cost.efficiency,
        cost.overlay_gbps,
        cost.underlay_gbps,
        cost.udp_loss * 100.0,
        cost.busy_cpu_s,
        cost.wall_s
    );
    cost
}

#[test]
fn network_policy_enforced_and_its_cost() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = cache_dir().join("mirror");
    let manifest = std::fs::read_to_string(mirror.join("manifest.json")).unwrap_or_default();
    assert!(
        manifest.contains("\"kube-network-policies\""),
        "no kube-network-policies image in {}: run scripts/build-mirror.sh first",
        mirror.display()
    );
    let c = Cluster {
        lab: Lab::up(3),
        mirror,
    };
    if let Some(why) = lab_bridge_problem() {
        panic!("the lab bridge is not usable after lab up: {why}");
    }
    let dir = c.lab.state.path().join("netpol");
    std::fs::create_dir_all(&dir).expect("manifest dir");
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
    // The add-on runs on every node, the control plane included.
    c.wait_for(
        &[
            "-n",
            "kube-system",
            "get",
            "daemonset",
            "kube-network-policies",
            "-o",
            "jsonpath={.status.numberReady}/{.status.desiredNumberScheduled}",
        ],
        120,
        |s| s.trim() == "3/3",
    );

    // web/server on node2; open/server on node1; clients: client/c on node1, other/c on node3.
    for ns in ["web", "open", "client", "other"] {
        apply(
            &c,
            &dir,
            &format!("ns-{ns}"),
            serde_json::json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":ns}}),
        );
    }
    let server = ["nc", "-ll", "-p", "7000", "-e", "cat"];
    apply(
        &c,
        &dir,
        "web-server",
        pod("web", "server", "node2", &server),
    );
    apply(
        &c,
        &dir,
        "open-server",
        pod("open", "server", "node1", &server),
    );
    apply(
        &c,
        &dir,
        "client-c",
        pod("client", "c", "node1", &["sleep", "3600"]),
    );
    apply(
        &c,
        &dir,
        "other-c",
        pod("other", "c", "node3", &["sleep", "3600"]),
    );
    for (ns, p) in [
        ("web", "server"),
        ("open", "server"),
        ("client", "c"),
        ("other", "c"),
    ] {
        let out = c.kubectl(&[
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=120s",
        ]);
        assert!(out.status.success(), "{ns}/{p} not Ready");
    }
    let web = pod_ip(&c, "web", "server");
    let open = pod_ip(&c, "open", "server");
    until_connects(&c, ("client", "c"), &web, true, "no policy yet");
    until_connects(&c, ("other", "c"), &open, true, "no policy yet");

    // Default-deny ingress in web: a pod of another namespace is refused.
    apply(
        &c,
        &dir,
        "web-deny",
        policy(
            "web",
            "default-deny-ingress",
            serde_json::json!({"podSelector":{},"policyTypes":["Ingress"]}),
        ),
    );
    until_connects(&c, ("client", "c"), &web, false, "default-deny ingress");
    // Allowing the client namespace (on the server's port) re-opens it, for that namespace only.
    apply(
        &c,
        &dir,
        "web-allow",
        policy(
            "web",
            "allow-client",
            serde_json::json!({"podSelector":{"matchLabels":{"app":"server"}},
                "policyTypes":["Ingress"],
                "ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"client"}}}],
                    "ports":[{"protocol":"TCP","port":PORT}]}]}),
        ),
    );
    until_connects(
        &c,
        ("client", "c"),
        &web,
        true,
        "allow from namespace client",
    );
    assert!(
        !connects(&c, ("other", "c"), &web),
        "namespace other must stay refused by web's policies"
    );

    // Egress: other/c (node3) may reach only 10.0.0.1/32; open/server on node1 is cut off.
    apply(
        &c,
        &dir,
        "other-egress",
        policy(
            "other",
            "egress-only-ipblock",
            serde_json::json!({"podSelector":{},"policyTypes":["Egress"],
                "egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.1/32"}}]}]}),
        ),
    );
    until_connects(&c, ("other", "c"), &open, false, "egress policy");
    assert!(
        connects(&c, ("client", "c"), &open),
        "client/c -> open/server has no policy and must stay open"
    );

    // netcheck's pod pairs keep passing with default-deny policies in user namespaces; then the
    // probe pods themselves under a policy in both directions (allowing all, so every new
    // connection goes through the queue and is judged, none refused).
    let with_addon = measure(&c, "add-on, policies elsewhere");
    assert!(
        with_addon.passed,
        "netcheck must pass with a default-deny policy in a user namespace"
    );
    apply(
        &c,
        &dir,
        "probe-policy",
        policy(
            "kube-system",
            "netcheck-probes-both-directions",
            serde_json::json!({"podSelector":{"matchLabels":{"app.kubernetes.io/name":"director-boot-netcheck"}},
                "policyTypes":["Ingress","Egress"],"ingress":[{}],"egress":[{}]}),
        ),
    );
    // TCP must pass; one-way UDP does not: an unreplied UDP flow stays `ct state new`, so under
    // a policy every datagram goes to the queue (kube-network-policies' design) and most of a
    // blast is dropped. Printed, not asserted.
    let with_policy = measure(&c, "add-on, policy on probes (in+out)");
    assert!(
        with_policy.tcp_everywhere,
        "TCP between probe pods under an allow-all policy"
    );

    // Without the add-on: the DaemonSet deleted and its table removed from every node.
    assert!(
        c.kubectl(&[
            "-n",
            "kube-system",
            "delete",
            "daemonset",
            "kube-network-policies",
            "--wait=true",
            "--timeout=60s"
        ])
        .status
        .success()
    );
    c.wait_for(
        &[
            "-n",
            "kube-system",
            "get",
            "pods",
            "-l",
            "k8s-app=kube-network-policies",
            "-o",
            "name",
        ],
        60,
        |s| s.trim().is_empty(),
    );
    let have_nft = Command::new("nft").arg("--version").output().is_ok();
    for i in 1..=3 {
        if have_nft {
            let _ = Command::new("ip")
                .args(["netns", "exec", &format!("dblab-node{i}")])
                .args(["nft", "delete", "table", "inet", "kube-network-policies"])
                .output();
        } else {
            eprintln!("netpol-cost: no nft on this host: node{i} keeps the add-on's idle table");
        }
    }
    let without = measure(&c, "without the add-on");
    eprintln!(
        "netpol-cost: efficiency ratio (policy on probes / without) = {:.3}; overlay Gbit/s ratio = {:.3}",
        with_policy.efficiency / without.efficiency.max(1e-9),
        with_policy.overlay_gbps / without.overlay_gbps.max(1e-9)
    );
    assert!(without.passed, "netcheck without the add-on");
}
