//! Issue 5's acceptance on a real 3-node lab: the Spark image (built by
//! scripts/build-app-images.sh from Debian, OpenJDK and PyPI's pyspark) side-loaded with
//! `images load`, `deploy-app spark` to all members Ready with endpoints, the master's JSON
//! status listing the ALIVE workers, a SparkPi job from the Jupyter pod, `apps scale` up and
//! back down (the highest ordinal and its Service gone), and Symphony passing the API server's
//! dry-run and ending in a missing-image diagnosis (Cassandra has its own lab test,
//! tests/apps_cassandra_lab.rs). Skipped with a reason when the Spark image archive has not
//! been built.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

fn spark_archive() -> PathBuf {
    cache_dir().join("app-images/spark.tar")
}

fn alive_workers(master_json: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(master_json).unwrap_or_default();
    v["workers"]
        .as_array()
        .map(|w| w.iter().filter(|w| w["state"] == "ALIVE").count())
        .unwrap_or(0)
}

/// The Spark master's `/json/` through its member Service's NodePort on node1.
fn master_json(c: &Cluster) -> String {
    let port = stdout(&c.kubectl(&[
        "get",
        "svc",
        "spark-master-0",
        "-o",
        "jsonpath={.spec.ports[?(@.port==8080)].nodePort}",
    ]));
    require_lab_bridge();
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://{}:{}/json/", node_addr(1), port.trim()))
        .output()
        .expect("curl");
    stdout(&out)
}

fn wait_alive(c: &Cluster, n: usize, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = master_json(c);
        if alive_workers(&j) == n {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "master never listed {n} ALIVE workers: {j}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[test]
fn spark_deploys_computes_pi_and_scales_and_missing_images_are_diagnosed() {
    if !is_root() {
        eprintln!("skipped: lab tests need root");
        return;
    }
    let mirror = cache_dir().join("mirror");
    assert!(mirror.join("manifest.json").exists(), "no artifact mirror");
    let archive = spark_archive();
    if !archive.exists() {
        eprintln!(
            "skipped: no Spark image at {} (scripts/build-app-images.sh spark)",
            archive.display()
        );
        return;
    }
    let c = Cluster {
        lab: Lab::up(3),
        mirror,
    };
    let (out, report) = c.init(&[]);
    assert!(out.status.success(), "init failed: {report}");
    let archive_s = archive.to_string_lossy().into_owned();

    // Side-load, twice: the second run changes nothing.
    let out = c.lab.with_inventory(&["images", "load"], &[&archive_s]);
    assert!(out.status.success(), "images load: {}", stderr(&out));
    let out = c
        .lab
        .with_inventory(&["--json", "images", "load"], &[&archive_s]);
    assert!(out.status.success());
    let second: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("images load --json");
    let states: Vec<(String, bool)> = second["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|h| h["images"].as_array().cloned().unwrap_or_default())
        .map(|i| {
            (
                i["state"].as_str().unwrap_or("?").to_string(),
                i["uploaded"] == true,
            )
        })
        .collect();
    assert_eq!(states.len(), 3, "one image on each of 3 hosts: {second}");
    assert!(
        states.iter().all(|(s, up)| s == "present" && !up),
        "second load changed something: {second}"
    );

    // deploy-app spark: master, 2 workers and jupyter Ready, endpoints printed.
    let t0 = Instant::now();
    let out = c.lab.run(&["deploy-app", "spark", "--timeout", "600"]);
    let took = t0.elapsed();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "deploy-app spark: {text}{}",
        stderr(&out)
    );
    for role in ["master", "worker", "jupyter"] {
        assert!(text.contains(role), "{text}");
    }
    assert!(
        text.contains(&format!("http://10.213.{}.", lab_slot())),
        "endpoints with node addresses: {text}"
    );
    eprintln!(
        "deploy-app spark: all members Ready in {:.1} s",
        took.as_secs_f64()
    );
    let j = wait_alive(&c, 2, 120);
    eprintln!("master /json/: {j}");

    // SparkPi from the Jupyter pod, against the standalone master.
    let out = c.kubectl(&[
        "exec",
        "spark-jupyter-0",
        "-c",
        "app",
        "--",
        "bash",
        "/etc/director-boot/run-pi.sh",
    ]);
    let pi = stdout(&out);
    let line = pi
        .lines()
        .find(|l| l.contains("Pi is roughly"))
        .unwrap_or_else(|| panic!("no pi in: {pi}{}", stderr(&out)));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!((value - std::f64::consts::PI).abs() < 0.05, "{line}");

    // Scale out to 3 workers, then back to 2: the highest ordinal and its Service go.
    let out = c.lab.run(&[
        "apps",
        "scale",
        "spark",
        "--role",
        "worker",
        "--members",
        "3",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_alive(&c, 3, 180);
    let out = c.lab.run(&[
        "apps",
        "scale",
        "spark",
        "--role",
        "worker",
        "--members",
        "2",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        !c.kubectl(&["get", "svc", "spark-worker-2"])
            .status
            .success(),
        "spark-worker-2's Service should be gone"
    );
    assert!(
        !c.kubectl(&["get", "pod", "spark-worker-2"])
            .status
            .success()
    );
    wait_alive(&c, 2, 180);
    let out = c.lab.run(&["--json", "apps", "status", "spark"]);
    assert!(out.status.success());

    // A second deploy-app keeps the recorded size and changes nothing.
    let out = c.lab.run(&["deploy-app", "spark", "--timeout", "300"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !c.kubectl(&["get", "pod", "spark-worker-2"])
            .status
            .success()
    );

    // Symphony: valid objects, an image nobody built: a clear diagnosis, soon.
    let entitlement = c.lab.state.path().join("entitlement.dat");
    std::fs::write(&entitlement, "director-boot lab entitlement\n").expect("entitlement");
    let ent = format!("secrets.entitlement.file={}", entitlement.display());
    let t0 = Instant::now();
    let out = c.lab.run(&[
        "deploy-app",
        "symphony",
        "--timeout",
        "300",
        "--set",
        ent.as_str(),
        "--set",
        "acceptLicense=true",
    ]);
    let all = stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(1), "symphony: {all}");
    assert!(
        all.contains("not available on"),
        "symphony: no missing-image diagnosis: {all}"
    );
    // The app's imageHelp: what to download and how to build the image.
    assert!(
        all.contains("sym-7.3.2.0_x86_64.bin")
            && all.contains("scripts/build-app-images.sh symphony --installer"),
        "symphony: no image help: {all}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(240),
        "symphony: the diagnosis took {:?}",
        t0.elapsed()
    );
}
