//! Issue 14's backup/restore and certificate acceptance on a real lab (items 4 and 5):
//! objects written (a ConfigMap, a Deployment), `backup`, the objects deleted, etcd broken on
//! every member (stopped, data dir removed), `restore --yes`: the objects are back and every
//! node is Ready; then `certs renew --all`: every leaf has a new notAfter, the CA files are
//! byte for byte the same, the cluster keeps working (nodes Ready, a new pod runs), and a
//! node's own client-certificate CSR is approved and signed (kubelet rotation).
//!
//! The lab is `lab up --nodes 2` (one etcd + control plane, one worker); `DAY2_LAB_ARGS`
//! replaces those arguments, e.g. `DAY2_LAB_ARGS="--nodes 4 --control-planes 3"` for a
//! 3-member etcd. Wall times of backup, restore and certs renew are printed
//! (`DAY2 TIME ...`). The mirror needs etcdutl (scripts/build-mirror.sh builds it).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const READY: &str = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";
const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key --command-timeout=5s";

/// (name, address) of every lab node, and which are etcd members, from the inventory.
fn lab_nodes(inv: &str) -> (Vec<(String, String)>, Vec<String>) {
    let v: serde_yaml::Value = serde_yaml::from_str(inv).expect("inventory yaml");
    let mut all = Vec::new();
    let mut etcd = Vec::new();
    for h in v["hosts"].as_sequence().expect("hosts") {
        let name = h["name"].as_str().expect("name").to_string();
        let addr = h["address"]
            .as_str()
            .or_else(|| h["ssh"]["address"].as_str())
            .expect("address")
            .to_string();
        let roles: Vec<&str> = h["roles"]
            .as_sequence()
            .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        if roles.contains(&"etcd") {
            etcd.push(addr.clone());
        }
        all.push((name, addr));
    }
    (all, etcd)
}

fn all_ready(nodes: &[(String, String)]) -> impl Fn(&str) -> bool + '_ {
    move |t: &str| nodes.iter().all(|(n, _)| t.contains(&format!("{n}=True")))
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    eprintln!("DAY2 TIME {what}: {:.1} s", t0.elapsed().as_secs_f64());
    r
}

/// notAfter per certificate name, and whether it is a CA, from `certs --json`.
fn cert_expiry(c: &Cluster) -> BTreeMap<String, (String, bool)> {
    let out = c.lab.with_inventory(&["--json", "certs"], &[]);
    assert!(out.status.success(), "certs: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("certs json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                (
                    c["not_after"].as_str().expect("not_after").to_string(),
                    c["is_ca"].as_bool().expect("is_ca"),
                ),
            )
        })
        .collect()
}

fn ca_sums(c: &Cluster) -> BTreeMap<String, String> {
    let pki = c.lab.state.path().join("clusters/lab/pki");
    [
        "ca.crt",
        "ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
    ]
    .iter()
    .map(|f| {
        let out = std::process::Command::new("sha256sum")
            .arg(pki.join(f))
            .output()
            .expect("sha256sum");
        (f.to_string(), stdout(&out))
    })
    .collect()
}

fn apply(c: &Cluster, name: &str, obj: serde_json::Value) {
    let file = c.lab.state.path().join(format!("{name}.json"));
    std::fs::write(&file, obj.to_string()).expect("write manifest");
    let out = c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn backup_restore_and_certificate_renewal() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    assert!(
        mirror.join("bin/etcdutl").exists(),
        "the mirror at {} has no etcdutl: rebuild it with scripts/build-mirror.sh",
        mirror.display()
    );
    let lab_args = std::env::var("DAY2_LAB_ARGS").unwrap_or_else(|_| "--nodes 2".into());
    let args: Vec<&str> = lab_args.split_whitespace().collect();
    let c = Cluster {
        lab: Lab::up_with(&args),
        mirror,
    };
    let inventory = std::fs::read_to_string(&c.lab.inventory).expect("inventory");
    let (nodes, etcd) = lab_nodes(&inventory);
    let cp = etcd[0].clone();
    let mirror_arg = c.mirror.to_string_lossy().into_owned();

    let (out, report) = timed("init", || c.init(&[]));
    assert!(
        out.status.success(),
        "init failed: {report}\n{}",
        stderr(&out)
    );
    c.wait_for(&["get", "nodes", "-o", READY], 180, all_ready(&nodes));

    // kubelet client certificates rotate: on in the kubelet, approved for nodes
    let cfg = stdout(
        &c.lab
            .ssh(&cp, "grep rotateCertificates /var/lib/kubelet/config.yaml"),
    );
    assert!(cfg.contains("rotateCertificates: true"), "{cfg}");

    // objects to keep: a ConfigMap and a Deployment (tolerating control planes, for a lab
    // without a worker)
    let busybox = image_ref(&c.mirror, "busybox");
    apply(
        &c,
        "cm",
        serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"day2-kept","namespace":"default"},"data":{"answer":"42"}}),
    );
    apply(
        &c,
        "deploy",
        serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"day2-web","namespace":"default"},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"day2-web"}},
            "template":{"metadata":{"labels":{"app":"day2-web"}},"spec":{
                "tolerations":[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}],
                "containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sleep","36000"]}]}}}}),
    );
    c.wait_for(
        &[
            "get",
            "deployment",
            "day2-web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        180,
        |t| t.trim() == "2",
    );

    // backup: a dry run writes nothing, the real one one private file
    let file = c.lab.state.path().join("lab.backup.tar.gz");
    let file_arg = file.to_string_lossy().into_owned();
    let out = c
        .lab
        .with_inventory(&["backup"], &["-o", &file_arg, "--dry-run"]);
    assert!(out.status.success(), "backup --dry-run: {}", stderr(&out));
    assert!(!file.exists(), "a dry run wrote the backup");
    let out = timed("backup", || {
        c.lab.with_inventory(&["backup"], &["-o", &file_arg])
    });
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let meta = std::fs::metadata(&file).expect("backup file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    eprintln!("DAY2 backup size: {} bytes", meta.len());
    // never overwritten
    let out = c.lab.with_inventory(&["backup"], &["-o", &file_arg]);
    assert!(!out.status.success(), "a second backup overwrote the file");

    // restore refuses without --yes; its dry run changes nothing
    let out = c.lab.with_inventory(&["restore"], &[&file_arg]);
    assert!(!out.status.success(), "restore ran without --yes");
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = c.lab.with_inventory(
        &["restore"],
        &[&file_arg, "--dry-run", "--artifacts", &mirror_arg],
    );
    assert!(out.status.success(), "restore --dry-run: {}", stderr(&out));
    assert!(
        stdout(&out).contains("would rebuild /var/lib/etcd")
            || stderr(&out).contains("would rebuild /var/lib/etcd")
    );
    assert!(
        c.kubectl(&["get", "configmap", "day2-kept"])
            .status
            .success()
    );

    // delete the objects, then break etcd on every member
    let out = c.kubectl(&["delete", "deployment", "day2-web", "--wait=true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.kubectl(&["delete", "configmap", "day2-kept"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !c.kubectl(&["get", "configmap", "day2-kept"])
            .status
            .success()
    );
    for addr in &etcd {
        let out = c.lab.ssh(
            addr,
            "systemctl stop etcd && rm -rf /var/lib/etcd && echo broken",
        );
        assert!(stdout(&out).contains("broken"), "{}", stderr(&out));
    }
    assert!(
        !c.kubectl(&["--request-timeout=5s", "get", "configmaps"])
            .status
            .success(),
        "the API still answers without etcd"
    );

    // restore
    let out = timed("restore", || {
        c.lab.with_inventory(
            &["restore"],
            &[&file_arg, "--yes", "--artifacts", &mirror_arg],
        )
    });
    assert!(out.status.success(), "restore failed: {}", stderr(&out));
    let cm = c.wait_for(
        &[
            "get",
            "configmap",
            "day2-kept",
            "-o",
            "jsonpath={.data.answer}",
        ],
        60,
        |t| t.trim() == "42",
    );
    assert_eq!(cm.trim(), "42");
    c.wait_for(
        &[
            "get",
            "deployment",
            "day2-web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        180,
        |t| t.trim() == "2",
    );
    c.wait_for(&["get", "nodes", "-o", READY], 120, all_ready(&nodes));
    let token = std::fs::read_to_string(c.lab.state.path().join("clusters/lab/etcd-token"))
        .expect("restore records the etcd token");
    for addr in &etcd {
        let health = c
            .lab
            .ssh(addr, &format!("{ETCDCTL} endpoint health --cluster"));
        assert!(
            stdout(&health).matches("is healthy").count() == etcd.len(),
            "{}{}",
            stdout(&health),
            stderr(&health)
        );
        let unit = stdout(&c.lab.ssh(addr, "cat /etc/systemd/system/etcd.service"));
        assert!(
            unit.contains(&format!("--initial-cluster-token={}", token.trim())),
            "{unit}"
        );
    }
    // init after a restore keeps etcd as it is
    let (out, report) = timed("init after restore", || c.init(&[]));
    assert!(out.status.success(), "init after restore: {report}");
    let changes = report["changes"].to_string();
    assert!(
        !changes.contains("restarted etcd"),
        "init after restore restarted etcd: {changes}"
    );

    // certificates: a dry run changes nothing, an unknown name is refused
    let before = cert_expiry(&c);
    let cas = ca_sums(&c);
    let out = c
        .lab
        .with_inventory(&["certs", "renew"], &["--all", "--dry-run"]);
    assert!(out.status.success(), "renew --dry-run: {}", stderr(&out));
    assert_eq!(cert_expiry(&c), before, "a dry run re-issued something");
    let out = c.lab.with_inventory(&["certs", "renew"], &["no-such-cert"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such leaf"), "{}", stderr(&out));
    std::thread::sleep(Duration::from_secs(2)); // notAfter has a 1 s resolution

    let out = timed("certs renew --all", || {
        c.lab
            .with_inventory(&["--json", "certs", "renew"], &["--all"])
    });
    assert!(out.status.success(), "certs renew --all: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    eprintln!("DAY2 certs renew changes: {}", report["changed"]);
    let after = cert_expiry(&c);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, (was, is_ca)) in &before {
        let (now, _) = &after[name];
        if *is_ca {
            assert_eq!(was, now, "CA {name} changed");
        } else {
            assert!(now > was, "{name}: notAfter {was} -> {now}");
        }
    }
    assert_eq!(ca_sums(&c), cas, "CA files changed");
    // what the hosts hold is what the PKI has now
    let pki = c.lab.state.path().join("clusters/lab/pki");
    let local = |f: &str| {
        stdout(
            &std::process::Command::new("sha256sum")
                .arg(pki.join(f))
                .output()
                .expect("sha256sum"),
        )
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
    };
    let remote = stdout(&c.lab.ssh(
        &cp,
        "sha256sum /etc/kubernetes/pki/apiserver.crt /etc/etcd/pki/server.crt",
    ));
    assert!(remote.contains(&local("apiserver.crt")), "{remote}");
    let etcd_name = &nodes.iter().find(|(_, a)| *a == cp).expect("cp node").0;
    assert!(
        remote.contains(&local(&format!("etcd/server-{etcd_name}.crt"))),
        "{remote}"
    );
    // one named certificate: only the units that use it restart
    let worker = &nodes.last().expect("a node").0;
    let one = format!("kubelet-{worker}-serving");
    let out = c.lab.with_inventory(&["--json", "certs", "renew"], &[&one]);
    assert!(out.status.success(), "certs renew {one}: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let restarted: Vec<String> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["change"].as_str())
        .filter(|c| c.starts_with("restarted"))
        .map(str::to_string)
        .collect();
    assert_eq!(restarted, ["restarted kubelet"], "{}", report["changes"]);
    let hosts: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["host"].as_str())
        .filter(|h| *h != "local")
        .collect();
    assert!(hosts.iter().all(|h| h == worker), "{hosts:?}");

    // the cluster keeps working: nodes Ready, a new pod runs
    c.wait_for(&["get", "nodes", "-o", READY], 120, all_ready(&nodes));
    apply(
        &c,
        "pod",
        serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"after-renew","namespace":"default"},"spec":{
            "tolerations":[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists","effect":"NoSchedule"}],
            "containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sleep","3600"]}]}}),
    );
    c.wait_for(
        &[
            "get",
            "pod",
            "after-renew",
            "-o",
            "jsonpath={.status.phase}",
        ],
        120,
        |t| t == "Running",
    );
    let out = c.kubectl(&["logs", "deployment/day2-web", "--tail=1"]);
    assert!(
        out.status.success(),
        "kubectl logs after renew: {}",
        stderr(&out)
    );
    let out = c.lab.with_inventory(&["certs"], &[]);
    assert!(
        !stderr(&out).contains("warning:"),
        "fresh certificates warned: {}",
        stderr(&out)
    );

    // kubelet rotation: a node's CSR for its own client certificate is approved and signed
    let key = c.lab.state.path().join("node-rotate.key");
    let csr = c.lab.state.path().join("node-rotate.csr");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args([
            "-subj",
            &format!("/O=system:nodes/CN=system:node:{etcd_name}"),
        ])
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", stderr(&made));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).expect("csr"));
    let manifest = serde_json::json!({"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest",
        "metadata":{"name":"day2-node-rotate"},
        "spec":{"request":b64,"signerName":"kubernetes.io/kube-apiserver-client-kubelet",
                "usages":["digital signature","client auth"]}})
    .to_string();
    let out = c.lab.ssh(
        &cp,
        &format!(
            "kubectl --kubeconfig /etc/kubernetes/kubelet.conf create -f - <<'EOF'\n{manifest}\nEOF"
        ),
    );
    assert!(out.status.success(), "node CSR: {}", stderr(&out));
    let status = c.wait_for(
        &[
            "get",
            "csr",
            "day2-node-rotate",
            "-o",
            "jsonpath={.status.conditions[*].type} {.status.certificate}",
        ],
        60,
        |t| t.starts_with("Approved ") && t.len() > "Approved ".len() + 100,
    );
    assert!(status.starts_with("Approved"), "{status}");
}
