//! Issue 3's acceptance on a real 3-node lab with real binaries from the artifact mirror
//! (scripts/build-mirror.sh): init, etcd health over TLS, API /readyz, nodes registered, RBAC in
//! force for node credentials, a host-network pod on a worker, a second init that changes and
//! restarts nothing, an interrupted init (node2's sshd killed) that a re-run completes, and a
//! reset that leaves no residue.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// Paths, units and links init puts on a node; reset must leave none of them.
const RESIDUE_CHECK: &str = "for p in /usr/local/bin/kubelet /usr/local/bin/containerd /usr/local/bin/etcd /etc/kubernetes /var/lib/etcd /etc/cni/net.d/10-director-boot.conflist /etc/systemd/system/kubelet.service /etc/systemd/system/etcd.service /etc/systemd/system/containerd.service /usr/local/lib/director-boot /var/lib/director-boot /opt/cni/bin/bridge; do [ -e $p ] && echo residue:$p; done; for l in dbvx0 dbbr0 cni0; do ip link show $l >/dev/null 2>&1 && echo residue:link:$l; done; iptables-save | grep -E 'DIRECTOR-BOOT|KUBE-' | head -3 | sed 's/^/residue:iptables:/'; ls /var/lib/kubelet 2>/dev/null | sed 's/^/residue:kubelet:/'; true";

#[test]
fn init_converges_survives_interruption_and_resets_clean() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let c = Cluster {
        lab: Lab::up(3),
        mirror,
    };

    // init from bare lab machines
    let (out, report) = c.init(&[]);
    assert!(
        out.status.success(),
        "init failed: {report}\n{}",
        stderr(&out)
    );
    assert_eq!(report["ok"], true);

    // etcd: every member healthy over TLS
    let etcd = c.lab.ssh(
        "10.213.0.11",
        "ETCDCTL_API=3 etcdctl --endpoints=https://10.213.0.11:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key endpoint health --cluster",
    );
    let text = format!("{}{}", stdout(&etcd), stderr(&etcd));
    assert!(
        etcd.status.success() && text.contains("is healthy"),
        "{text}"
    );

    // API server ready, all three nodes registered and Ready
    assert_eq!(
        stdout(&c.kubectl(&["get", "--raw", "/readyz"])).trim(),
        "ok"
    );
    c.wait_for(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"], 120, |t| {
        ["node1=True", "node2=True", "node3=True"].iter().all(|n| t.contains(n))
    });

    // RBAC in force: a node's credentials cannot read secrets, the admin's can
    let can = c.kubectl(&[
        "auth",
        "can-i",
        "list",
        "secrets",
        "--all-namespaces",
        "--as",
        "system:node:node2",
        "--as-group",
        "system:nodes",
    ]);
    assert!(stdout(&can).trim().starts_with("no"), "{}", stdout(&can));
    assert_eq!(
        stdout(&c.kubectl(&["auth", "can-i", "list", "secrets", "--all-namespaces"])).trim(),
        "yes"
    );

    // a host-network pod on a worker, from a side-loaded image; Pod Security's baseline
    // (the cluster default) refuses host networking, so its namespace says privileged
    let busybox = image_ref(&c.mirror, "busybox");
    let pod = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"hostnet","labels":{"pod-security.kubernetes.io/enforce":"privileged"}}},
        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"hostnet","namespace":"hostnet"},"spec":{"hostNetwork":true,"nodeName":"node2","containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sleep","3600"]}]}}
    ]}).to_string();
    let manifest = c.lab.state.path().join("hostnet.json");
    std::fs::write(&manifest, pod).expect("write pod");
    assert!(
        c.kubectl(&["apply", "-f", &manifest.to_string_lossy()])
            .status
            .success()
    );
    c.wait_for(
        &[
            "-n",
            "hostnet",
            "get",
            "pod",
            "hostnet",
            "-o",
            "jsonpath={.status.phase}",
        ],
        120,
        |t| t == "Running",
    );
    let logs = c.kubectl(&["-n", "hostnet", "exec", "hostnet", "--", "hostname"]);
    assert_eq!(
        stdout(&logs).trim(),
        "node2",
        "exec through the kubelet API"
    );

    // second init: nothing changed, nothing restarted, no certificate rewritten
    let pki = c.lab.state.path().join("clusters/lab/pki");
    let mtimes = |dir: &PathBuf| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut v = Vec::new();
        for sub in ["", "etcd"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                        v.push((e.path(), m));
                    }
                }
            }
        }
        v.sort();
        v
    };
    let before = mtimes(&pki);
    let units = "systemctl show -p ActiveEnterTimestampMonotonic etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy director-overlay";
    let started_before = stdout(&c.lab.ssh("10.213.0.11", units));
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "second init failed: {report}");
    assert_eq!(
        report["changed"], 0,
        "second init changed things: {}",
        report["changes"]
    );
    assert_eq!(mtimes(&pki), before, "certificates rewritten");
    assert_eq!(
        stdout(&c.lab.ssh("10.213.0.11", units)),
        started_before,
        "units restarted"
    );

    // reset: no residue on any node
    let out = c.lab.with_inventory(&["reset"], &["--yes"]);
    assert!(out.status.success(), "reset failed: {}", stderr(&out));
    for addr in ["10.213.0.11", "10.213.0.12", "10.213.0.13"] {
        let r = c.lab.ssh(addr, RESIDUE_CHECK);
        assert_eq!(stdout(&r), "", "residue on {addr}");
    }

    // interrupted init: node2's sshd (and its sessions) killed a few seconds in, back later
    let arm = c.lab.ssh(
        "10.213.0.12",
        "systemd-run --quiet --on-active=6 systemctl kill --signal=KILL ssh.service && systemd-run --quiet --on-active=45 systemctl restart ssh.service",
    );
    assert!(arm.status.success(), "{}", stderr(&arm));
    let t0 = Instant::now();
    let (out, report) = c.init(&[]);
    assert!(
        !out.status.success(),
        "init must fail when node2 drops out: {report}"
    );
    let node2 = &report["hosts"]["node2"];
    assert_eq!(node2["state"], "failed", "{report}");
    assert!(
        node2["phase"].as_str().is_some_and(|p| !p.is_empty()),
        "{report}"
    );
    assert_eq!(
        report["hosts"]["node1"]["state"], "done",
        "other hosts' work intact: {report}"
    );
    // after sshd is back, a re-run completes the cluster
    let wait = Duration::from_secs(50).saturating_sub(t0.elapsed());
    std::thread::sleep(wait);
    let (out, report) = c.init(&[]);
    assert!(
        out.status.success(),
        "re-run after the interruption failed: {report}"
    );
    c.wait_for(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"], 120, |t| {
        ["node1=True", "node2=True", "node3=True"].iter().all(|n| t.contains(n))
    });
}
