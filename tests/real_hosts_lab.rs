//! Issue 13, item 7: a lab that behaves like RHEL cloud images (firewalld on, root cannot log
//! in over SSH, `ops` logs in with a key and has passwordless sudo). init works through sudo
//! with the firewall on: 3 Ready nodes, pod to pod across nodes, a NodePort Service answering
//! the host, cluster DNS in a pod.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn bridge_up() -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", "dblab0", "up"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

/// One HTTP GET from this machine (only to a lab address while the lab bridge is up).
fn http_get(addr: &str, path: &str) -> Option<String> {
    assert!(bridge_up(), "dblab0 is down: not talking to {addr}");
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn firewalld_and_sudo_user_lab_runs_a_working_cluster() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = cache_dir().join("mirror");
    assert!(
        mirror.join("manifest.json").exists(),
        "no artifact mirror at {}: run scripts/build-mirror.sh first",
        mirror.display()
    );
    let t0 = Instant::now();
    let c = Cluster {
        lab: Lab::up_with(&["--nodes", "3", "--firewalld", "--user", "ops"]),
        mirror,
    };
    let inv = std::fs::read_to_string(&c.lab.inventory).expect("inventory");
    assert!(inv.contains("user: ops"), "{inv}");

    // Like a RHEL cloud image: root is refused over SSH, ops gets root only through sudo.
    let root = ssh(&c.lab.dir(), "root@10.213.0.11", "true");
    assert!(!root.status.success(), "root logged in over SSH");
    let ops = |addr: &str, cmd: &str| ssh(&c.lab.dir(), &format!("ops@{addr}"), cmd);
    let who = ops(
        "10.213.0.11",
        "sudo -n id -u; systemctl is-active firewalld",
    );
    assert_eq!(stdout(&who), "0\nactive\n", "{}", stderr(&who));

    let (out, report) = c.init(&[]);
    assert!(
        out.status.success(),
        "init failed: {report}\n{}",
        stderr(&out)
    );
    assert!(report["bytes_sent"].as_u64().unwrap_or(0) > 0, "{report}");
    eprintln!(
        "init through sudo with firewalld: {:.1} s, {} bytes sent",
        report["seconds"].as_f64().unwrap_or(0.0),
        report["bytes_sent"]
    );

    // firewalld still on, with exactly the director-boot service opened in the default zone.
    for addr in ["10.213.0.11", "10.213.0.12", "10.213.0.13"] {
        let fw = ops(
            addr,
            "sudo -n firewall-cmd --state && sudo -n firewall-cmd --list-services",
        );
        let text = stdout(&fw);
        assert!(
            text.starts_with("running") && text.contains("director-boot"),
            "{addr}: {text}{}",
            stderr(&fw)
        );
    }

    c.wait_for(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"], 120, |t| {
        ["node1=True", "node2=True", "node3=True"].iter().all(|n| t.contains(n))
    });

    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.mirror.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let busybox = manifest["artifacts"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["kind"] == "image" && x["name"] == "busybox")
        })
        .and_then(|x| x["ref"].as_str())
        .expect("busybox image in the mirror")
        .to_string();
    let pod = |name: &str, node: &str, cmd: &str| {
        serde_json::json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"namespace":"default","labels":{"app":name}},
            "spec":{"nodeName":node,"containers":[{"name":"c","image":busybox,"imagePullPolicy":"Never","command":["sh","-c",cmd]}]}})
    };
    let objects = serde_json::json!({"apiVersion":"v1","kind":"List","items":[
        pod("client", "node2", "sleep 3600"),
        pod("web", "node3", "mkdir -p /www && echo hello-from-node3 > /www/index.html && exec httpd -f -p 8080 -h /www"),
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},
         "spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":8080,"targetPort":8080,"nodePort":30080}]}}
    ]});
    let file = c.lab.state.path().join("objects.json");
    std::fs::write(&file, objects.to_string()).expect("write objects");
    assert!(
        c.kubectl(&["apply", "-f", &file.to_string_lossy()])
            .status
            .success()
    );
    for p in ["client", "web"] {
        c.wait_for(
            &["get", "pod", p, "-o", "jsonpath={.status.phase}"],
            120,
            |t| t == "Running",
        );
    }
    let web_ip = stdout(&c.kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]));

    // pod on node2 -> pod on node3, across the overlay through both firewalls
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // nc, not wget: static busybox's wget looks the "http" service up through NSS,
        // which crashes in a static glibc binary (exit 139).
        let got = c.kubectl(&[
            "exec",
            "client",
            "--",
            "sh",
            "-c",
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {web_ip} 8080"),
        ]);
        if stdout(&got).contains("hello-from-node3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod to pod failed: {}",
            stderr(&got)
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // NodePort from this machine, on a node without the pod and on the one with it
    for node in ["10.213.0.12", "10.213.0.13"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http_get(&format!("{node}:30080"), "/")
                .is_some_and(|b| b.contains("hello-from-node3"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "NodePort on {node} did not answer"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    // cluster DNS from a pod
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dns = c.kubectl(&["exec", "client", "--", "nslookup", "kubernetes.default"]);
        if stdout(&dns).contains("10.96.0.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "DNS did not resolve kubernetes.default: {}{}",
            stdout(&dns),
            stderr(&dns)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("real-hosts lab test: {:.0} s", t0.elapsed().as_secs_f64());
}
