//! Issue 12's acceptance on a real 5-node lab with 3 control planes: init from bare machines
//! gives 5 Ready nodes, the admin kubeconfig goes through the endpoint (a VIP held by keepalived
//! on one control plane), etcd has 3 healthy members, a second init changes nothing; then the
//! endpoint's holder is stopped: the API answers through the endpoint again, a new pod runs on
//! a worker, the workers stay Ready, etcd reports 2 of 3 healthy; the holder comes back and a
//! re-run of init converges. Last, a harder failure: the holder's network link is cut (no
//! goodbye from it), with the same checks.
//!
//! `HA_FAILOVER_ROUNDS=N` repeats the stop/measure/start cycle N times (default 1) and prints
//! each time the API took to come back, for the failover figure.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const VIP: &str = "10.213.0.10";
const CONTROL_PLANES: [(&str, &str); 3] = [
    ("node1", "10.213.0.11"),
    ("node2", "10.213.0.12"),
    ("node3", "10.213.0.13"),
];
const READY: &str = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}";

fn etcd_health(c: &Cluster, addr: &str) -> String {
    let out = c.lab.ssh(
        addr,
        &format!("ETCDCTL_API=3 etcdctl --endpoints=https://{addr}:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key --command-timeout=3s endpoint health --cluster 2>&1"),
    );
    stdout(&out)
}

/// The control plane that holds the VIP now.
fn holder(
    c: &Cluster,
    up: &[(&'static str, &'static str)],
) -> Option<(&'static str, &'static str)> {
    up.iter().copied().find(|(_, addr)| {
        stdout(&c.lab.ssh(addr, &format!("ip -o addr show to {VIP}/32"))).contains(VIP)
    })
}

#[test]
fn ha_control_plane_survives_losing_the_endpoint_holder() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = lab_mirror();
    let c = Cluster {
        lab: Lab::up_with(&["--nodes", "5", "--control-planes", "3"]),
        mirror,
    };
    let inventory = std::fs::read_to_string(&c.lab.inventory).expect("inventory");
    assert!(inventory.contains(VIP), "lab inventory: {inventory}");

    let (out, report) = c.init(&[]);
    assert!(
        out.status.success(),
        "init failed: {report}\n{}",
        stderr(&out)
    );

    // users reach the API through the endpoint
    let admin = std::fs::read_to_string(c.lab.state.path().join("clusters/lab/admin.conf"))
        .expect("admin kubeconfig");
    assert!(
        admin.contains(&format!("server: https://{VIP}:6443")),
        "{admin}"
    );
    c.wait_for(&["get", "nodes", "-o", READY], 180, |t| {
        (1..=5).all(|i| t.contains(&format!("node{i}=True")))
    });
    let health = etcd_health(&c, "10.213.0.11");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    // the control planes are tainted: pods go to the workers
    let taints = stdout(&c.kubectl(&[
        "get",
        "node",
        "node1",
        "-o",
        "jsonpath={.spec.taints[*].key}",
    ]));
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane"),
        "{taints}"
    );

    // a second init changes nothing
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "second init failed: {report}");
    assert_eq!(
        report["changed"], 0,
        "second init changed things: {}",
        report["changes"]
    );

    let rounds: usize = std::env::var("HA_FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let busybox = image_ref(&c.mirror, "busybox");
    let mut times = Vec::new();
    for round in 1..=rounds {
        let (name, addr) = holder(&c, &CONTROL_PLANES).expect("some control plane holds the VIP");
        let survivors: Vec<(&str, &str)> = CONTROL_PLANES
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect();

        let t0 = Instant::now();
        let mut stopped = Duration::ZERO;
        let outage = measure_outage(&c, || {
            let out = c.lab.run(&["lab", "stop", name]);
            assert!(out.status.success(), "lab stop {name}: {}", stderr(&out));
            stopped = t0.elapsed();
        });
        eprintln!(
            "HA round {round}: stopped {name} (`lab stop` took {:.1} s); {outage}",
            stopped.as_secs_f64()
        );
        times.push(outage.seconds);
        assert!(outage.seconds < 30.0, "{outage}");
        let new_holder = holder(&c, &survivors).expect("a surviving control plane holds the VIP");
        eprintln!("HA round {round}: {} holds {VIP} now", new_holder.0);

        // a new pod runs on a worker
        let pod = format!("after-failover-{round}");
        let spec = serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":pod,"namespace":"default"},"spec":{"containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sleep","3600"]}]}}).to_string();
        let file = c.lab.state.path().join(format!("{pod}.json"));
        std::fs::write(&file, spec).expect("write pod");
        let created = c.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        assert!(created.status.success(), "{}", stderr(&created));
        let placed = c.wait_for(
            &[
                "get",
                "pod",
                &pod,
                "-o",
                "jsonpath={.status.phase} {.spec.nodeName}",
            ],
            120,
            |t| t.starts_with("Running "),
        );
        assert!(
            placed.ends_with("node4") || placed.ends_with("node5"),
            "pod not on a worker: {placed}"
        );

        // the workers stay Ready past the node-monitor grace period, etcd has 2 of 3
        std::thread::sleep(Duration::from_secs(50).saturating_sub(t0.elapsed()));
        let nodes = stdout(&c.kubectl(&["get", "nodes", "-o", READY]));
        assert!(
            nodes.contains("node4=True") && nodes.contains("node5=True"),
            "{nodes}"
        );
        let health = etcd_health(&c, survivors[0].1);
        assert_eq!(health.matches("is healthy").count(), 2, "{health}");
        assert!(
            health.contains(addr),
            "the stopped member is reported: {health}"
        );

        // back: the host starts its units itself, and init converges
        let out = c.lab.run(&["lab", "start", name]);
        assert!(out.status.success(), "lab start {name}: {}", stderr(&out));
        let (out, report) = c.init(&[]);
        assert!(
            out.status.success(),
            "init after {name} came back: {report}"
        );
        eprintln!(
            "HA round {round}: init after {name} came back: {} changed: {}",
            report["changed"], report["changes"]
        );
        c.wait_for(&["get", "nodes", "-o", READY], 180, |t| {
            (1..=5).all(|i| t.contains(&format!("node{i}=True")))
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = etcd_health(&c, "10.213.0.11");
            if health.matches("is healthy").count() == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "etcd not whole again: {health}");
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    eprintln!("HA API outage per round (s): {times:?}");

    // A harder failure than a clean poweroff: the holder's link to the lab bridge goes down
    // (its host-side veth, which the lab created), so it sends no goodbye and its peers must
    // notice the silence.
    let (name, addr) = holder(&c, &CONTROL_PLANES).expect("some control plane holds the VIP");
    let index: u32 = name.trim_start_matches("node").parse().expect("node index");
    let veth = format!("dblab-node{index}");
    let link = |state: &str| {
        let out = std::process::Command::new("ip")
            .args(["link", "set", &veth, state])
            .output()
            .expect("ip link");
        assert!(out.status.success(), "ip link set {veth} {state}");
    };
    let outage = measure_outage(&c, || link("down"));
    eprintln!("HA partition: cut {name}'s link ({veth}); {outage}");
    assert!(outage.seconds < 30.0, "{outage}");
    let survivors: Vec<(&str, &str)> = CONTROL_PLANES
        .iter()
        .copied()
        .filter(|(n, _)| *n != name)
        .collect();
    assert!(holder(&c, &survivors).is_some(), "no survivor took {VIP}");
    std::thread::sleep(Duration::from_secs(50));
    let nodes = stdout(&c.kubectl(&["get", "nodes", "-o", READY]));
    assert!(
        nodes.contains("node4=True") && nodes.contains("node5=True"),
        "{nodes}"
    );
    link("up");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let health = etcd_health(&c, addr);
        if health.matches("is healthy").count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "etcd not whole again: {health}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init after the partition: {report}");
    eprintln!(
        "HA partition: init after the link came back: {} changed",
        report["changed"]
    );

    // reset takes the endpoint and the load balancers away too
    let out = c.lab.with_inventory(&["reset"], &["--yes"]);
    assert!(out.status.success(), "reset failed: {}", stderr(&out));
    for i in 1..=5 {
        let addr = format!("10.213.0.1{i}");
        let left = stdout(&c.lab.ssh(
            &addr,
            &format!("ip -o addr show to {VIP}/32; ls /etc/director-boot /etc/systemd/system/director-apiserver-* 2>/dev/null; true"),
        ));
        assert_eq!(left.trim(), "", "residue on {addr}");
    }
}

/// What a client polling /readyz through the endpoint (1 s timeout, every 200 ms) saw while
/// `fail` ran and until the API answered again: the outage a user sees, not the time the
/// failure itself took.
struct Outage {
    seconds: f64,
    failed: usize,
    polls: usize,
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "API outage through {VIP}: {:.1} s ({} of {} polls failed)",
            self.seconds, self.failed, self.polls
        )
    }
}

fn measure_outage(c: &Cluster, fail: impl FnOnce()) -> Outage {
    let polling = Arc::new(AtomicBool::new(true));
    let poller = {
        let polling = polling.clone();
        let kubectl = c.mirror.join("bin/kubectl");
        let admin = c.lab.state.path().join("clusters/lab/admin.conf");
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while polling.load(Ordering::Relaxed) && lab_bridge_up() {
                let ok = std::process::Command::new(&kubectl)
                    .arg("--kubeconfig")
                    .arg(&admin)
                    .args(["--request-timeout=1s", "get", "--raw", "/readyz"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                samples.push((Instant::now(), ok));
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    fail();
    // the API through the endpoint again, seen from here
    loop {
        assert!(lab_bridge_up(), "the lab bridge went away");
        let out = c.kubectl(&["--request-timeout=2s", "get", "nodes", "-o", READY]);
        if out.status.success() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "API not back through {VIP} 90 s after the failure: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(2));
    polling.store(false, Ordering::Relaxed);
    let samples = poller.join().expect("poller");
    let seconds = match samples.iter().position(|(_, ok)| !ok) {
        None => 0.0,
        Some(i) => {
            let back = samples[i..]
                .iter()
                .find(|(_, ok)| *ok)
                .map(|(t, _)| *t)
                .expect("the API answered again");
            (back - samples[i].0).as_secs_f64()
        }
    };
    Outage {
        seconds,
        failed: samples.iter().filter(|(_, ok)| !ok).count(),
        polls: samples.len(),
    }
}
