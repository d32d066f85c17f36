//! Issue 18's acceptance on a real 2-node lab (node1 etcd + control plane, node2 worker): after
//! init a new Secret is stored encrypted (`k8s:enc:secretbox:v1:key1:`), the audit log records
//! its creation and read with user and verb and never its value, a privileged pod in a new
//! namespace is refused by Pod Security, anonymous requests reach only the health endpoints,
//! files and the etcd user are as the README's CIS table says; then `secrets rotate-key`
//! twice leaves every Secret readable and stored under the newest key.

mod common;

use std::process::Command;

use common::*;

const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

fn on_cp(c: &Cluster, cmd: &str) -> String {
    let out = c.lab.ssh(&node_addr(1), cmd);
    let text = stdout(&out);
    eprintln!("node1$ {cmd}\n{text}{}", stderr(&out));
    text
}

/// How many stored Secrets are under `key`, and how many there are.
fn secrets_under(c: &Cluster, key: &str) -> (usize, usize) {
    let total = on_cp(
        c,
        &format!("{ETCDCTL} get --prefix /registry/secrets/ --keys-only | grep -c . || true"),
    );
    let under = on_cp(
        c,
        &format!(
            "{ETCDCTL} get --prefix /registry/secrets/ --print-value-only | grep -a -c 'k8s:enc:secretbox:v1:{key}:' || true"
        ),
    );
    (
        under.trim().parse().unwrap_or(0),
        total.trim().parse().unwrap_or(0),
    )
}

#[test]
fn secrets_encrypted_audited_pod_security_and_cis_files() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let c = Cluster {
        lab: Lab::up(2),
        mirror,
    };
    let (out, report) = c.init(&[]);
    assert!(
        out.status.success(),
        "init failed: {report}\n{}",
        stderr(&out)
    );

    // A new Secret is stored encrypted with the first key, never in clear.
    let value = format!("hardening-{}", std::process::id());
    let created = c.kubectl(&[
        "create",
        "secret",
        "generic",
        "x",
        &format!("--from-literal=password={value}"),
    ]);
    assert!(created.status.success());
    assert!(
        c.kubectl(&["get", "secret", "x", "-o", "name"])
            .status
            .success()
    );
    let stored = on_cp(&c, &format!("{ETCDCTL} get /registry/secrets/default/x"));
    assert!(
        stored.contains("k8s:enc:secretbox:v1:key1:"),
        "not encrypted: {stored}"
    );
    assert!(!stored.contains(&value), "the value is in etcd in clear");

    // The audit log: create and get of that Secret, with user and verb; its value nowhere.
    let audit = on_cp(
        &c,
        "grep -h '\"resource\":\"secrets\"' /var/log/kubernetes/audit/audit.log | grep '\"name\":\"x\"' | grep '\"namespace\":\"default\"'",
    );
    for verb in ["create", "get"] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(&format!("\"verb\":\"{verb}\""))
                    && l.contains("\"username\":\"kubernetes-admin\"")
                    && l.contains("\"level\":\"Metadata\"")),
            "no {verb} of secret x by kubernetes-admin in the audit log: {audit}"
        );
    }
    let leaks = on_cp(
        &c,
        &format!("grep -rc -- '{value}' /var/log/kubernetes/audit/ | grep -v ':0$' || true"),
    );
    assert!(
        leaks.trim().is_empty(),
        "the value is in the audit log: {leaks}"
    );
    let mode = on_cp(&c, "stat -c '%a %U:%G' /var/log/kubernetes/audit/audit.log");
    assert_eq!(mode.trim(), "600 root:root");

    // Pod Security: a privileged pod in a new namespace is refused with the admission message.
    assert!(
        c.kubectl(&["create", "namespace", "psa-test"])
            .status
            .success()
    );
    let priv_pod = c.kubectl(&[
        "-n",
        "psa-test",
        "run",
        "priv",
        &format!("--image={}", image_ref(&c.mirror, "busybox")),
        "--image-pull-policy=Never",
        "--restart=Never",
        "--privileged",
        "--",
        "sleep",
        "60",
    ]);
    let msg = stderr(&priv_pod);
    assert!(!priv_pod.status.success(), "a privileged pod was admitted");
    assert!(
        msg.contains("violates PodSecurity \"baseline:latest\"") && msg.contains("privileged"),
        "{msg}"
    );

    // Anonymous requests: the health endpoints only (the HA load balancer's /readyz).
    require_lab_bridge();
    let curl = |path: &str| -> String {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("https://{}:6443{path}", node_addr(1)))
            .output()
            .expect("curl");
        stdout(&out)
    };
    assert_eq!(curl("/readyz"), "200");
    assert_eq!(curl("/livez"), "200");
    assert_eq!(curl("/healthz"), "200");
    assert_eq!(curl("/api"), "401");
    assert_eq!(curl("/version"), "401");

    // CIS file modes and owners, the etcd user.
    let files = on_cp(
        &c,
        "stat -c '%a %U:%G %n' /etc/systemd/system/kube-apiserver.service /etc/systemd/system/kube-controller-manager.service /etc/systemd/system/kube-scheduler.service /etc/systemd/system/etcd.service /etc/systemd/system/kubelet.service /var/lib/kubelet/config.yaml /etc/kubernetes/*.conf /etc/kubernetes/*.yaml /etc/kubernetes/pki/* /etc/kubernetes/pki/etcd/* 2>&1 | grep -v ' directory'",
    );
    let bad: Vec<&str> = files
        .lines()
        .filter(|l| !l.starts_with("600 root:root ") && !l.ends_with("/etc/kubernetes/pki/etcd"))
        .collect();
    assert!(bad.is_empty(), "not 600 root:root: {bad:?}");
    assert!(files.contains("/etc/kubernetes/encryption-config.yaml"));
    let etcd = on_cp(
        &c,
        "stat -c '%a %U:%G' /var/lib/etcd; ps -o user= -C etcd; stat -c '%a %U:%G %n' /etc/etcd/pki/*",
    );
    let mut lines = etcd.lines();
    assert_eq!(lines.next(), Some("700 etcd:etcd"), "{etcd}");
    assert_eq!(lines.next().map(str::trim), Some("etcd"), "{etcd}");
    assert!(lines.all(|l| l.starts_with("600 etcd:etcd ")), "{etcd}");
    let kubelet = on_cp(
        &c,
        "grep -E '^(seccompDefault|podPidsLimit|tlsMinVersion|readOnlyPort):' /var/lib/kubelet/config.yaml",
    );
    for want in [
        "seccompDefault: true",
        "podPidsLimit: 4096",
        "tlsMinVersion: VersionTLS12",
    ] {
        assert!(kubelet.contains(want), "{kubelet}");
    }
    // TLS below 1.2 is refused by the API server, the kubelet and etcd.
    for port in ["6443", "10250", "2379"] {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("{}:{port}", node_addr(1)),
                "-tls1_1",
            ])
            .stdin(std::process::Stdio::null())
            .output();
        if let Ok(o) = out {
            let text = format!("{}{}", stdout(&o), stderr(&o));
            assert!(
                !o.status.success() || text.contains("Cipher is (NONE)"),
                "TLS 1.1 accepted on {port}: {text}"
            );
        }
    }

    // Rotate twice: every Secret readable, all under the newest key.
    for (round, key) in [(1, "key2"), (2, "key3")] {
        let out = c.lab.with_inventory(&["secrets", "rotate-key"], &[]);
        assert!(out.status.success(), "rotate-key round {round} failed");
        let (under, total) = secrets_under(&c, key);
        assert!(total > 0);
        assert_eq!(
            under, total,
            "round {round}: {under} of {total} Secrets under {key}"
        );
        let got = c.kubectl(&["get", "secret", "x", "-o", "jsonpath={.data.password}"]);
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(stdout(&got).trim())
            .unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&decoded), value);
        assert!(c.kubectl(&["get", "secrets", "-A"]).status.success());
    }
    let config = on_cp(
        &c,
        "grep -c 'name: key' /etc/kubernetes/encryption-config.yaml",
    );
    assert_eq!(config.trim(), "1", "the old keys are dropped");
}
