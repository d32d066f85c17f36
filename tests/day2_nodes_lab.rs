//! Issue 14, items 1 and 2, on one real HA lab (5 machines, the endpoint a VIP):
//! - grow: init with an inventory of 3 (node1, node2: etcd + control plane; node4: worker),
//!   then with all 5 and `--limit node3,node5` (a full init afterwards changes nothing): node3 joins etcd (member add, `existing`) and the control plane, node5
//!   joins as a worker; etcd shows 3 healthy members, a pod runs on node5, and no existing
//!   unit restarted except those that must learn the peers (API servers, API load balancers,
//!   keepalived, the overlay);
//! - remove a worker: a deployment with a PodDisruptionBudget has pods on node5;
//!   `remove-node` without --yes only plans; with --yes the pods move, the Node is gone, the
//!   host is clean, no remaining node routes to its pod subnet; `validate` and `init` refuse
//!   the inventory that still lists it;
//! - remove an etcd member: with another member's etcd stopped, removing node3 is refused
//!   (quorum); with it back, node3 goes and etcd has 2 healthy members.
//!
//! Wall times of the add (`init` with the new nodes) and of each `remove-node` are printed
//! (`TIMING ...`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const ADDR: [(&str, &str); 5] = [
    ("node1", "10.213.0.11"),
    ("node2", "10.213.0.12"),
    ("node3", "10.213.0.13"),
    ("node4", "10.213.0.14"),
    ("node5", "10.213.0.15"),
];
const UNITS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
    "director-apiserver-lb",
    "director-apiserver-vip",
    "director-overlay",
];
/// The units that must learn a new peer (its etcd endpoint and API server, its pod subnet).
const LEARN_PEERS: &[&str] = &[
    "kube-apiserver",
    "director-apiserver-lb",
    "director-apiserver-vip",
    "director-overlay",
];
const READY: &str = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";

fn addr(name: &str) -> &'static str {
    ADDR.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .expect("lab node")
}

fn etcdctl(c: &Cluster, on: &str, args: &str) -> String {
    let a = addr(on);
    stdout(&c.lab.ssh(
        a,
        &format!("etcdctl --endpoints=https://{a}:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key --command-timeout=5s {args} 2>&1"),
    ))
}

/// ActiveEnterTimestamp of every unit present on the host.
fn started(c: &Cluster, node: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for u in UNITS {
        let t = stdout(&c.lab.ssh(
            addr(node),
            &format!("systemctl show -p ActiveEnterTimestamp --value {u}.service"),
        ));
        let t = t.trim().to_string();
        if !t.is_empty() {
            out.insert(u.to_string(), t);
        }
    }
    out
}

/// Members in `etcdctl member list` output (warnings left out).
fn member_lines(list: &str) -> usize {
    list.lines().filter(|l| l.contains(":2380")).count()
}

fn write_inventory(c: &Cluster, full: &str, keep: &[&str]) {
    let mut v: serde_yaml::Value = serde_yaml::from_str(full).expect("inventory yaml");
    let hosts = v["hosts"].as_sequence_mut().expect("hosts");
    hosts.retain(|h| keep.contains(&h["name"].as_str().unwrap_or("")));
    std::fs::write(&c.lab.inventory, serde_yaml::to_string(&v).expect("yaml")).expect("write");
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    eprintln!("TIMING {what}: {:.1} s", t0.elapsed().as_secs_f64());
    r
}

fn pods_on(c: &Cluster, selector: &str) -> Vec<(String, String, String)> {
    let out = stdout(&c.kubectl(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName}{\"\\n\"}{end}",
    ]));
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.to_string(),
                w.next()?.to_string(),
                w.next().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

#[test]
fn nodes_join_and_leave_an_ha_cluster() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let c = Cluster {
        lab: Lab::up_with(&["--nodes", "5", "--control-planes", "3"]),
        mirror,
    };
    let full = std::fs::read_to_string(&c.lab.inventory).expect("inventory");
    let busybox = image_ref(&c.mirror, "busybox");

    // ---- a 3-node cluster: node1, node2 (etcd + control plane), node4 (worker)
    write_inventory(&c, &full, &["node1", "node2", "node4"]);
    let (out, report) = timed("init 3 nodes", || c.init(&[]));
    assert!(out.status.success(), "init of 3 failed: {report}");
    c.wait_for(&["get", "nodes", "-o", READY], 180, |t| {
        ["node1", "node2", "node4"]
            .iter()
            .all(|n| t.contains(&format!("{n}=True")))
    });
    let members = etcdctl(&c, "node1", "member list");
    assert_eq!(member_lines(&members), 2, "{members}");

    let before: BTreeMap<&str, BTreeMap<String, String>> = ["node1", "node2", "node4"]
        .iter()
        .map(|n| (*n, started(&c, n)))
        .collect();
    // systemd's timestamps have a one-second resolution.
    std::thread::sleep(Duration::from_secs(2));

    // ---- grow to 5 by editing the inventory
    std::fs::write(&c.lab.inventory, &full).expect("full inventory");
    let dry = c.lab.with_inventory(
        &["init"],
        &["--artifacts", &c.mirror.to_string_lossy(), "--dry-run"],
    );
    assert!(dry.status.success(), "dry run failed");
    let text = format!("{}{}", stdout(&dry), stderr(&dry));
    assert!(
        text.contains("etcd member add node3"),
        "the dry run names the member add"
    );
    let (out, report) = timed(
        "init --limit node3,node5 adding node3 (etcd+cp) and node5 (worker)",
        || c.init(&["--limit", "node3,node5"]),
    );
    assert!(out.status.success(), "init of 5 failed: {report}");
    let changes = report["changes"].to_string();
    assert!(changes.contains("etcd member add node3"), "{changes}");
    // --limit touched the named hosts and only the peer roles elsewhere
    for c in report["changes"].as_array().expect("changes") {
        let (host, phase) = (
            c["host"].as_str().unwrap_or(""),
            c["phase"].as_str().unwrap_or(""),
        );
        if !["node3", "node5", "local"].contains(&host) {
            assert!(
                ["apiserver-lb", "control-plane", "overlay"].contains(&phase),
                "--limit changed {host} in {phase}: {c}"
            );
        }
    }
    // ...and that was all: a full init now changes nothing
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init after --limit failed: {report}");
    assert_eq!(
        report["changed"], 0,
        "init after --limit changed: {}",
        report["changes"]
    );
    c.wait_for(&["get", "nodes", "-o", READY], 180, |t| {
        (1..=5).all(|i| t.contains(&format!("node{i}=True")))
    });
    let members = etcdctl(&c, "node1", "member list -w table");
    eprintln!("{members}");
    assert!(members.contains("node3"), "{members}");
    let health = etcdctl(&c, "node1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let unit = stdout(
        &c.lab
            .ssh(addr("node3"), "cat /etc/systemd/system/etcd.service"),
    );
    assert!(
        unit.contains("--initial-cluster-state=existing"),
        "node3's unit: {unit}"
    );
    let unit = stdout(
        &c.lab
            .ssh(addr("node1"), "cat /etc/systemd/system/etcd.service"),
    );
    assert!(
        unit.contains("--initial-cluster-state=new") && !unit.contains("node3="),
        "node1's unit changed: {unit}"
    );

    // no existing unit restarted, except those that must learn the peers
    let mut restarted = Vec::new();
    for (node, units) in &before {
        let now = started(&c, node);
        for (u, t) in units {
            if now.get(u) != Some(t) {
                restarted.push(format!("{node}/{u}"));
                assert!(
                    LEARN_PEERS.contains(&u.as_str()),
                    "{node}: {u} restarted ({t} -> {:?}) though it need not learn the new peers",
                    now.get(u)
                );
            }
        }
    }
    eprintln!("RESTARTED (must learn the peers): {}", restarted.join(", "));

    // a pod runs on the new worker
    let pod = serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"on-node5","namespace":"default"},
        "spec":{"nodeSelector":{"kubernetes.io/hostname":"node5"},"terminationGracePeriodSeconds":1,
        "containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sleep","3600"]}]}});
    let file = c.lab.state.path().join("on-node5.json");
    std::fs::write(&file, pod.to_string()).expect("write pod");
    assert!(
        c.kubectl(&["apply", "-f", &file.to_string_lossy()])
            .status
            .success()
    );
    c.wait_for(
        &["get", "pod", "on-node5", "-o", "jsonpath={.status.phase}"],
        120,
        |t| t == "Running",
    );
    assert!(
        c.kubectl(&["delete", "pod", "on-node5", "--wait=false"])
            .status
            .success()
    );

    // ---- a deployment with a PodDisruptionBudget, spread over both workers
    let deploy = serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
        "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
        "spec":{"terminationGracePeriodSeconds":1,
            "topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"ScheduleAnyway","labelSelector":{"matchLabels":{"app":"web"}}}],
            "containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sleep","3600"]}]}}}});
    let pdb = serde_json::json!({"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"web","namespace":"default"},
        "spec":{"minAvailable":2,"selector":{"matchLabels":{"app":"web"}}}});
    for (name, doc) in [("web", deploy), ("web-pdb", pdb)] {
        let f = c.lab.state.path().join(format!("{name}.json"));
        std::fs::write(&f, doc.to_string()).expect("write");
        assert!(
            c.kubectl(&["apply", "-f", &f.to_string_lossy()])
                .status
                .success()
        );
    }
    c.wait_for(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        120,
        |t| t == "3",
    );
    let on5 = pods_on(&c, "app=web")
        .iter()
        .filter(|(_, _, n)| n == "node5")
        .count();
    assert!(on5 > 0, "no web pod on node5: {:?}", pods_on(&c, "app=web"));
    let subnets: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.lab.state.path().join("clusters/lab/subnets.json"))
            .expect("subnets"),
    )
    .expect("subnets json");
    let node5_subnet = subnets["node5"].as_str().expect("node5 subnet").to_string();

    // ---- remove-node without --yes: the plan, nothing changed
    let plan = c.lab.with_inventory(&["remove-node"], &["node5"]);
    assert!(
        !plan.status.success(),
        "remove-node without --yes must fail"
    );
    let text = format!("{}{}", stdout(&plan), stderr(&plan));
    assert!(text.contains("cordon and drain node5"), "{text}");
    assert!(text.contains("--yes"), "{text}");
    let nodes = stdout(&c.kubectl(&["get", "nodes", "-o", READY]));
    assert!(nodes.contains("node5=True"), "{nodes}");

    // ---- remove the worker
    let mirror = c.mirror.to_string_lossy().into_owned();
    let out = timed("remove-node node5 (worker, PDB)", || {
        c.lab.with_inventory(
            &["remove-node"],
            &[
                "node5",
                "--yes",
                "--artifacts",
                &mirror,
                "--drain-timeout",
                "180",
            ],
        )
    });
    assert!(out.status.success(), "remove-node node5 failed");
    let nodes = stdout(&c.kubectl(&["get", "nodes", "-o", "name"]));
    assert!(!nodes.contains("node5"), "{nodes}");
    c.wait_for(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        120,
        |t| t == "3",
    );
    let pods = pods_on(&c, "app=web");
    assert!(
        pods.iter().all(|(_, p, n)| p == "Running" && n != "node5"),
        "{pods:?}"
    );
    // the host is clean
    let left = stdout(&c.lab.ssh(
        addr("node5"),
        "systemctl is-active kubelet containerd kube-proxy director-overlay 2>&1; \
         ls /usr/local/bin /etc/kubernetes 2>&1; ip -o link show dbvx0 2>&1",
    ));
    assert!(
        !left.contains("\nactive") && !left.starts_with("active"),
        "{left}"
    );
    assert!(!left.contains("kubelet\n"), "{left}");
    assert!(left.contains("does not exist"), "{left}");
    // no remaining node routes to its pod subnet or keeps its VXLAN neighbour
    for n in ["node1", "node2", "node3", "node4"] {
        let routes = stdout(&c.lab.ssh(
            addr(n),
            &format!(
                "ip route show {node5_subnet}; bridge fdb show dev dbvx0 | grep -c {} || true",
                addr("node5")
            ),
        ));
        assert_eq!(routes.trim(), "0", "{n} still has node5: {routes}");
        let lb = stdout(
            &c.lab
                .ssh(addr(n), "cat /etc/director-boot/apiserver-lb.cfg"),
        );
        assert!(!lb.is_empty(), "{n}: no API load balancer config");
    }
    // validate and init refuse an inventory that still lists it
    let v = c.lab.with_inventory(&["validate"], &[]);
    assert!(!v.status.success());
    assert!(stderr(&v).contains("node5"), "{}", stderr(&v));
    let (out, _) = c.init(&[]);
    assert!(!out.status.success(), "init with a removed node must fail");
    assert!(stderr(&out).contains("remove-node"), "{}", stderr(&out));
    write_inventory(&c, &full, &["node1", "node2", "node3", "node4"]);
    let v = c.lab.with_inventory(&["validate"], &[]);
    assert!(v.status.success());

    // ---- an etcd member whose removal would lose quorum is refused
    assert!(
        c.lab
            .ssh(addr("node2"), "systemctl stop etcd")
            .status
            .success()
    );
    let out = c.lab.with_inventory(
        &["remove-node"],
        &["node3", "--yes", "--artifacts", &mirror],
    );
    assert!(
        !out.status.success(),
        "removal that loses quorum must be refused"
    );
    assert!(
        stderr(&out).contains("would lose etcd quorum"),
        "{}",
        stderr(&out)
    );
    assert!(etcdctl(&c, "node1", "member list").contains("node3"));
    assert!(
        c.lab
            .ssh(addr("node2"), "systemctl start etcd")
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while etcdctl(&c, "node1", "endpoint health --cluster")
        .matches("is healthy")
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "etcd did not heal");
        std::thread::sleep(Duration::from_secs(2));
    }

    // ---- remove the etcd + control-plane member node3
    let out = timed("remove-node node3 (etcd + control plane)", || {
        c.lab.with_inventory(
            &["remove-node"],
            &["node3", "--yes", "--artifacts", &mirror],
        )
    });
    assert!(out.status.success(), "remove-node node3 failed");
    let members = etcdctl(&c, "node1", "member list");
    assert_eq!(member_lines(&members), 2, "{members}");
    assert!(!members.contains("node3"), "{members}");
    let health = etcdctl(&c, "node1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 2, "{health}");
    let nodes = c.wait_for(&["get", "nodes", "-o", READY], 120, |t| {
        t.contains("node1=True") && t.contains("node2=True") && t.contains("node4=True")
    });
    assert!(!nodes.contains("node3"), "{nodes}");
    for n in ["node1", "node2"] {
        let unit = stdout(
            &c.lab
                .ssh(addr(n), "cat /etc/systemd/system/kube-apiserver.service"),
        );
        assert!(
            !unit.contains(addr("node3")),
            "{n}: API server still lists node3"
        );
    }
    let left = stdout(&c.lab.ssh(
        addr("node3"),
        "ls /var/lib/etcd 2>&1; systemctl is-active etcd 2>&1",
    ));
    assert!(left.contains("No such file"), "{left}");
    // the cluster still works
    c.wait_for(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        120,
        |t| t == "3",
    );
    write_inventory(&c, &full, &["node1", "node2", "node4"]);
    let (out, report) = timed("init after the removals (converged)", || c.init(&[]));
    assert!(out.status.success(), "init after removals failed: {report}");
}
