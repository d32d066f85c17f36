//! Issue 2's acceptance on real lab machines: facts and exec over three nspawn nodes, a
//! replaced host key refused on that node only, a stopped node reported unreachable in bounded
//! time, sudo as a non-root user, and a bastion (ProxyJump) through node1.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn facts_exec_host_keys_and_failures_on_a_three_node_lab() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let lab = Lab::up(3);

    // facts: three distinct hosts with their OS and addresses
    let out = lab.with_inventory(&["--json", "facts"], &[]);
    assert!(out.status.success(), "facts failed: {}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("facts --json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    let mut addrs = std::collections::BTreeSet::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["ok"], true, "{r}");
        let f = &r["facts"];
        assert_eq!(f["hostname"], format!("node{}", i + 1));
        assert_eq!(f["family"], "debian");
        assert_eq!(f["os"]["id"], "debian");
        assert_eq!(f["init_system"], "systemd");
        addrs.insert(f["address"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(addrs.len(), 3, "three distinct addresses: {addrs:?}");
    let table = stdout(&lab.with_inventory(&["facts"], &[]));
    assert!(table.contains("Debian GNU/Linux 12"), "{table}");

    // exec: hostname everywhere, prefixed by host
    let out = lab.with_inventory(&["exec"], &["--", "hostname"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for n in 1..=3 {
        assert!(text.contains(&format!("node{n} | node{n}")), "{text}");
    }
    // --persist: the second call reuses the agent's sessions; the agent leaves when idle
    for _ in 0..2 {
        let out = lab.with_inventory(&["exec"], &["--persist", "3", "--", "hostname"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("node3 | node3"), "{}", stdout(&out));
    }
    let mux_dir = lab.state.path().join("mux");
    let socket_count = || std::fs::read_dir(&mux_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(socket_count(), 1, "one agent socket while it lives");
    let deadline = Instant::now() + Duration::from_secs(15);
    while socket_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the agent did not leave after its idle time"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // a role filter and sudo
    let out = lab.with_inventory(
        &["exec"],
        &["--hosts", "control-plane", "--sudo", "--", "id -u"],
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "node1 | 0");

    // a non-root user with passwordless sudo
    let inv_text = std::fs::read_to_string(&lab.inventory).expect("inventory");
    let ops = lab.state.path().join("ops.yaml");
    let ops_text =
        inv_text
            .replacen("user: root", "user: ops", 1)
            .replacen("sudo: false", "sudo: auto", 1);
    assert!(
        ops_text.contains("user: ops") && ops_text.contains("sudo: auto"),
        "{ops_text}"
    );
    std::fs::write(&ops, &ops_text).expect("write");
    let ops_path = ops.to_string_lossy().into_owned();
    let out = db(
        lab.state.path(),
        &["exec", &ops_path, "--sudo", "--", "id -un"],
    );
    assert!(out.status.success(), "sudo as ops: {}", stderr(&out));
    assert!(stdout(&out).contains("node2 | root"), "{}", stdout(&out));
    let out = db(lab.state.path(), &["exec", &ops_path, "--", "id -un"]);
    assert!(stdout(&out).contains("node3 | ops"), "{}", stdout(&out));

    // node1 as bastion (ProxyJump) for an inventory of node2 and node3
    let start = inv_text.find("\nhosts:").expect("hosts section");
    let bastion_text = format!(
        "{}\nhosts:\n  - name: node2\n    address: 10.213.0.12\n    roles: [etcd, control-plane, worker]\n  - name: node3\n    address: 10.213.0.13\n    roles: [worker]\n",
        &inv_text[..start]
    )
    .replacen("ssh:\n", "ssh:\n  bastion:\n    address: 10.213.0.11\n", 1);
    let bastion = lab.state.path().join("bastion.yaml");
    std::fs::write(&bastion, &bastion_text).expect("write");
    let out = db(
        lab.state.path(),
        &["exec", &bastion.to_string_lossy(), "--", "hostname"],
    );
    assert!(
        out.status.success(),
        "through the bastion: {}\n{bastion_text}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("node2 | node2") && stdout(&out).contains("node3 | node3"));
    // node2's sshd saw the connection coming from node1, not from the control machine.
    let out = db(
        lab.state.path(),
        &[
            "exec",
            &bastion.to_string_lossy(),
            "--hosts",
            "node2",
            "--",
            "echo $SSH_CLIENT",
        ],
    );
    assert!(
        stdout(&out).contains("node2 | 10.213.0.11 "),
        "{}",
        stdout(&out)
    );

    // node2 gets a new host key: only node2 fails, with both fingerprints
    let rekey = lab.ssh(
        "10.213.0.12",
        "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh",
    );
    assert!(rekey.status.success(), "rekey: {}", stderr(&rekey));
    let out = lab.with_inventory(&["exec"], &["--", "hostname"]);
    assert!(
        !out.status.success(),
        "a changed host key must fail the run"
    );
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(
        o.contains("node1 | node1") && o.contains("node3 | node3"),
        "{o}"
    );
    assert!(!o.contains("node2 | node2"), "{o}");
    let line = e
        .lines()
        .find(|l| l.contains("node2") && l.contains("HOST KEY CHANGED"))
        .unwrap_or_else(|| panic!("no host key error for node2 in: {e}"));
    assert_eq!(
        line.matches("SHA256:").count(),
        2,
        "both fingerprints: {line}"
    );
    assert!(e.contains("2 ok, 1 failed"), "{e}");

    // node3 stopped: unreachable within the connect timeout, the others fine
    let stop = lab.run(&["lab", "stop", "node3"]);
    assert!(stop.status.success());
    let started = Instant::now();
    let out = lab.with_inventory(
        &["exec"],
        &[
            "--connect-timeout",
            "5",
            "--hosts",
            "node1,node3",
            "--",
            "true",
        ],
    );
    let took = started.elapsed();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("1 ok, 1 failed"), "{e}");
    let line = e
        .lines()
        .find(|l| l.trim_start().starts_with("node3:"))
        .unwrap_or_else(|| panic!("node3 not named: {e}"));
    assert!(
        line.contains("cannot connect") || line.contains("no SSH handshake"),
        "{line}"
    );
    // bounded: the connect timeout plus process start, never a hang
    assert!(took < Duration::from_secs(30), "took {took:?}");
}
